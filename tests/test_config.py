"""The pretraining configuration: one dataclass, its flags, its presets,
what --resume keeps, and errors that name settings, worded per caller."""
import ast
import dataclasses
import glob
import os
import re

import pytest

from gluon_bert import config as C
from gluon_bert import flags as F
from gluon_bert import pretrain
from gluon_bert.utils import GluonBertError


def test_every_field_is_a_flag_and_every_flag_a_field():
    parser = pretrain.build_parser()
    dests = {a.dest for a in parser._actions if a.dest != 'help'}
    assert dests == {f.name for f in dataclasses.fields(C.PretrainConfig)}


def test_recipes_are_presets_of_the_configuration():
    book = F.config_from_flags({})
    assert book == C.PretrainConfig()  # the book's recipe is the defaults
    bert = F.config_from_flags({'recipe': 'bert', 'lr': 1e-3})
    assert bert.lr == 1e-3  # a flag wins over the recipe
    for key in C.RECIPE_KEYS:
        if key != 'lr':
            assert getattr(bert, key) == C.RECIPES['bert'][key]
    # Only the given flags are in the parsed namespace
    assert pretrain.parse_flags(['--recipe', 'bert', '--steps', '3']) == {
        'recipe': 'bert', 'steps': 3}


def test_a_saved_configuration_round_trips():
    config = F.config_from_flags({'recipe': 'bert', 'max_minutes': 30.0})
    assert C.PretrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(GluonBertError, match='unknown settings colour'):
        C.PretrainConfig.from_dict(dict(config.to_dict(), colour='red'))


def test_resume_keeps_the_run_takes_new_limits_and_refuses_changes():
    saved = F.config_from_flags({'recipe': 'bert', 'max_minutes': 5.0,
                                 'log_every': 3, 'save_dir': 'a'}).to_dict()
    resumed = F.resumed_config(saved, {'resume': True, 'max_minutes': 9.0,
                                       'save_dir': 'a'})
    assert resumed.recipe == 'bert' and resumed.lr == 3e-3  # same
    assert resumed.max_minutes == 9.0  # a limit given again
    assert resumed.log_every == 10  # free: this command's (the default)
    # An older run's 'settings' (no 'config'): the rest are defaults
    assert F.resumed_config({'lr': 0.5}, {}).lr == 0.5
    with pytest.raises(GluonBertError) as e:
        F.resumed_config(saved, {'batch_size': 8})
    assert e.value.worded() == (
        '--batch-size 8 differs from the run being resumed (128): drop '
        '--batch-size, or start a new run in another --save-dir')


def test_errors_name_settings_and_commands_word_them_as_flags():
    e = GluonBertError('max_len 3 is short; max_len_x and --max_len stay',
                       ['max_len'])
    assert str(e) == 'max_len 3 is short; max_len_x and --max_len stay'
    assert e.worded() == '--max-len 3 is short; max_len_x and --max_len stay'
    assert e.worded(lambda name: f'`{name}=`') == (
        '`max_len=` 3 is short; max_len_x and --max_len stay')


def test_no_library_module_raises_an_error_naming_a_flag():
    # Library modules (no main) name settings; commands word them
    folder = os.path.dirname(C.__file__)
    offenders = []
    for path in glob.glob(os.path.join(folder, '*.py')):
        source = open(path, encoding='utf-8').read()
        tree = ast.parse(source)
        if any(isinstance(n, ast.FunctionDef) and n.name == 'main'
               for n in tree.body):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None and \
                    re.search(r'--[a-z]', ast.get_source_segment(source,
                                                                 node)):
                offenders.append(f'{os.path.basename(path)}:{node.lineno}')
    assert offenders == []


def test_no_command_imports_another():
    # Commands are shells over the library; what two need lives there
    folder = os.path.dirname(C.__file__)
    trees = {os.path.basename(p)[:-3]: ast.parse(open(p, encoding='utf-8')
                                                 .read())
             for p in glob.glob(os.path.join(folder, '*.py'))}
    commands = {name for name, tree in trees.items()
                if any(isinstance(n, ast.FunctionDef) and n.name == 'main'
                       for n in tree.body)}
    assert {'pretrain', 'finetune', 'predict', 'encode', 'evaluate',
            'compare', 'launch', 'doctor', 'export'} <= commands
    imports = []
    for name in commands:
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = ([node.module] if node.module else
                           [a.name for a in node.names])
                imports += [(name, t) for t in targets if t in commands]
    assert imports == []


def test_fine_tuning_has_one_configuration_too():
    from gluon_bert import finetune
    parser = finetune.build_parser()
    dests = {a.dest for a in parser._actions if a.dest != 'help'}
    assert dests == {f.name for f in dataclasses.fields(C.FinetuneConfig)}
    config = finetune.parse_args(['--model-dir', 'm', '--data-dir', 'd',
                                  '--lr', '3e-4', '--task', 'snli'])
    assert config == C.FinetuneConfig(model_dir='m', data_dir='d', lr=3e-4,
                                      task='snli')
    # the book's settings by default for the book's task
    assert (config.epochs, config.batch_size, config.dropout) == (5, 512, 0.1)
    with pytest.raises(SystemExit):
        finetune.parse_args(['--data-dir', 'd'])  # --model-dir is required


def test_every_task_the_flag_offers_has_a_reader():
    from gluon_bert.tasks import TASKS
    field = C.FinetuneConfig.__dataclass_fields__['task'].metadata
    assert field['choices'] == tuple(TASKS)
    assert all(TASKS[t].help in field['help'] for t in TASKS)


#: Every command of the package.
COMMANDS = ['pretrain', 'evaluate', 'encode', 'finetune', 'predict', 'compare',
            'launch', 'doctor', 'export']


def _exit_code(name, argv, capsys):
    """``python -m gluon_bert.NAME ARGV`` run in-process, for a flag that
    ends it while parsing: (exit code, stdout, stderr)."""
    import importlib
    command = importlib.import_module(f'gluon_bert.{name}')
    with pytest.raises(SystemExit) as e:
        command.main(argv)
    return (e.value.code,) + tuple(capsys.readouterr())


@pytest.mark.parametrize('name', COMMANDS)
def test_every_command_answers_help(name, capsys):
    code, out, _ = _exit_code(name, ['--help'], capsys)
    assert code == 0
    assert out.startswith(f'usage: python -m gluon_bert.{name}')
    assert '-h, --help' in out


@pytest.mark.parametrize('name', COMMANDS)
def test_every_option_explains_itself_and_shows_its_default(name):
    """Every option has a help text, and every default a user would have to
    guess (0 included) is shown."""
    import argparse
    import importlib
    parser = importlib.import_module(f'gluon_bert.{name}').build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action) or ''
        flag = '/'.join(action.option_strings) or action.dest
        assert text.strip(), f'{name} {flag} has no help'
        default = action.default
        if isinstance(action, argparse._StoreConstAction):
            continue  # -q and -v: short for --log-level, which shows it
        if name in ('pretrain', 'finetune'):  # defaults from the config
            field = {f.name: f for f in dataclasses.fields(
                C.PretrainConfig if name == 'pretrain'
                else C.FinetuneConfig)}.get(action.dest)
            default = field.default if field else default
        if default is not None and default is not False \
                and default is not argparse.SUPPRESS:
            assert 'default' in text, f'{name} {flag}: no default shown'


@pytest.mark.parametrize('argv, lr, batch_size', [
    (['--task', 'snli'], 1e-4, 512),             # the book's task: the book's
    (['--task', 'snli-small'], 1e-4, 512),
    (['--task', 'tsv'], 1e-4, 512),
    (['--task', 'qnli'], 3e-4, 64),              # GLUE: what paid
    (['--task', 'rte'], 1e-3, 64),
    (['--task', 'sts-b'], 3e-4, 64),
    (['--task', 'qnli', '--recipe', 'book'], 1e-4, 512),
    (['--task', 'qnli', '--lr', '1e-5'], 1e-5, 64),  # a flag given wins
    (['--task', 'mrpc', '--batch-size', '8', '--recipe', 'book'], 1e-4, 8),
])
def test_fine_tuning_defaults_per_task(argv, lr, batch_size):
    from gluon_bert import finetune
    config = finetune.parse_args(['--model-dir', 'm', '--data-dir', 'd']
                                 + argv)
    assert (config.lr, config.batch_size) == (lr, batch_size)
    assert C.GLUE_SETTINGS.keys() <= set(C.TASKS)


def test_the_glue_recipe_for_another_task_is_a_usage_error(capsys):
    from gluon_bert import finetune
    with pytest.raises(SystemExit) as e:
        finetune.parse_args(['--model-dir', 'm', '--data-dir', 'd', '--task',
                             'snli', '--recipe', 'glue'])
    assert e.value.code == 2
    assert 'not --task snli' in capsys.readouterr().err


def test_the_readmes_layout_names_every_module_and_no_other():
    """README.md's module table and gluon_bert/ agree."""
    root = os.path.join(os.path.dirname(C.__file__), os.pardir)
    with open(os.path.join(root, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    layout = readme[readme.index('## Layout'):]
    layout = layout[:layout.index('\n## ', 1)]
    table = [line for line in layout.splitlines()
             if line.startswith('| ') and not line.startswith('| job')]
    named = {n for line in table
             for n in re.findall(r'`(\w+)`', line.split('|')[2])}
    modules = {os.path.basename(p)[:-3] for p in glob.glob(
        os.path.join(root, 'gluon_bert', '*.py'))} - {'__init__'}
    assert named == modules


def test_every_library_module_is_used_by_a_command():
    """The library is for reading: each module serves some command (through
    the imports of the commands, followed to the end)."""
    folder = os.path.dirname(C.__file__)
    trees = {os.path.basename(p)[:-3]: ast.parse(open(p, encoding='utf-8')
                                                 .read())
             for p in glob.glob(os.path.join(folder, '*.py'))}
    imports = {}
    for name, tree in trees.items():
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split('.')[0]] if node.module else
                             [a.name for a in node.names])
        imports[name] = found & set(trees)
    commands = {name for name, tree in trees.items()
                if any(isinstance(n, ast.FunctionDef) and n.name == 'main'
                       for n in tree.body)}
    reached, todo = set(), list(commands | {'__init__'})
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(imports[name])
    assert set(trees) - reached == set()


@pytest.mark.parametrize('name', COMMANDS)
def test_a_usage_error_is_one_line_pointing_at_help(name, capsys):
    code, _, err = _exit_code(name, ['--no-such-flag'], capsys)
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith(f'(see python -m gluon_bert.{name} --help)')
    assert ('unrecognized arguments: --no-such-flag' in err[0]
            or 'the following arguments are required' in err[0])
