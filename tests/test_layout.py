"""The package's shape, as a reader meets it: the README's module table
names exactly the modules there are, no module is longer than 500 lines,
no function longer than 60, and the library reports through logging
(``print`` is left to the commands and the progress lines)."""
import ast
import glob
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
PACKAGE = os.path.join(ROOT, 'gluon_bert')
#: Modules that print: the commands (they talk to the user), and the
#: progress lines of pretraining and fine-tuning and the logging handler
#: that writes the commands' messages.
PRINTS = {'pretrain', 'finetune', 'encode', 'evaluate', 'predict', 'export',
          'compare', 'doctor', 'launch', 'history', 'classifier', 'utils'}


def modules():
    return {os.path.basename(path)[:-3]: path
            for path in glob.glob(os.path.join(PACKAGE, '*.py'))
            if not path.endswith('__init__.py')}


def layout_table():
    """The module names of the README's layout table (its rows from
    ``| commands |`` on)."""
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    table = text[text.index('| commands |'):]
    table = table[:table.index('\n\n')]
    return set(re.findall(r'`(\w+)`', table))


def test_the_readmes_layout_names_every_module_and_no_other():
    assert layout_table() == set(modules())


def test_no_module_over_500_lines_no_function_over_60():
    long = []
    for name, path in modules().items():
        with open(path, encoding='utf-8') as f:
            text = f.read()
        if text.count('\n') > 500:
            long.append(f'{name}: {text.count(chr(10))} lines')
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > 60:
                    long.append(f'{name}.{node.name}: {size} lines')
    assert not long


def test_only_commands_and_progress_lines_print():
    printing = set()
    for name, path in modules().items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
        if any(isinstance(node, ast.Call) and getattr(node.func, 'id', None)
               == 'print' for node in ast.walk(tree)):
            printing.add(name)
    assert printing <= PRINTS, printing - PRINTS


def _imports(path):
    """The package's modules that the module at ``path`` imports (relative
    imports, at the top or inside a function)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split('.')[0])
            else:
                names.update(a.name for a in node.names)
    return names


def test_every_module_serves_a_command():
    """Each module is reached from a command (a module that runs as
    ``python -m gluon_bert.NAME``) through the package's own imports."""
    found = modules()
    commands = set()
    for name, path in found.items():
        with open(path, encoding='utf-8') as f:
            if "if __name__ == '__main__':" in f.read():
                commands.add(name)
    reached, todo = set(commands), list(commands)
    while todo:
        for name in _imports(found[todo.pop()]) & set(found):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    assert set(found) - reached == set()


def test_the_documented_functions_have_numpydoc_sections():
    """The functions the README's example and the tutorials call are
    documented as the Blocks are: Parameters (where they take any) and
    Returns."""
    import inspect

    from gluon_bert import (checkpoint, classifier, dataset, devices,
                            encoder, trainer)
    functions = [dataset.load_data_wiki, devices.try_all_gpus,
                 encoder.get_bert_encoding, encoder.encode_texts,
                 trainer.train_bert, trainer.train_step,
                 trainer.evaluate_bert, checkpoint.load_pretrained,
                 classifier.load_classifier, classifier.predict_texts]
    for function in functions:
        doc = inspect.getdoc(function)
        sections = ['Returns\n-------']
        if inspect.signature(function).parameters:
            sections.append('Parameters\n----------')
        for section in sections:
            assert section in doc, (function.__name__, section)
