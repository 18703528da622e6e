"""Command-line flags generated from a configuration, and back.

Hugging Face's ``HfArgumentParser`` way: :func:`add_arguments` makes one
flag per field of a :mod:`gluon_bert.config` dataclass (its help, type,
choices and default shown), :func:`config_from_flags` turns the flags given
into the configuration (defaults, then the recipe, then the flags), and for
a resumed run :func:`resumed_config` and :func:`differing_settings` say
what may change; :func:`command_line` writes a configuration back as flags.
"""
import argparse
import dataclasses

from .config import LOG_LEVELS, RECIPE_KEYS, RECIPES, PretrainConfig
from .utils import GluonBertError

__all__ = ['add_arguments', 'config_from_flags', 'resumed_config',
           'differing_settings', 'command_line']


def _flag(name):
    return '--' + name.replace('_', '-')


def _help(field, cls=PretrainConfig):
    """The field's help with its default, or what each recipe gives it."""
    text = field.metadata['help']
    if field.metadata['required']:
        return text
    if cls is PretrainConfig and field.name in RECIPE_KEYS:
        given = ', '.join(f'{r} {RECIPES[r][field.name]}' for r in RECIPES)
        return f'{text} (default: from --recipe: {given})'
    # 'is', not 'in': 0 == False, and a default of 0 is worth showing
    if 'default' in text or field.default is None or field.default is False:
        return text
    return f'{text} (default: {field.default})'


def add_arguments(parser, cls=PretrainConfig, groups=None):
    """Add one flag per field of ``cls`` to ``parser``, in argument groups
    named by the fields' ``group`` (``groups``: name -> (title,
    description)).  Every flag's default is ``argparse.SUPPRESS``, so the
    parsed namespace holds only the flags given: :func:`config_from_flags`
    fills in the rest."""
    made = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta['flag']:
            continue
        if meta['group'] not in made:
            title, description = (groups or {}).get(meta['group'],
                                                    (meta['group'], None))
            made[meta['group']] = parser.add_argument_group(title,
                                                            description)
        group, flag = made[meta['group']], _flag(field.name)
        common = dict(dest=field.name, default=argparse.SUPPRESS)
        if meta['required']:
            common['required'] = True
        if field.type is bool and field.default:
            raise TypeError(f'{field.name}: a flag turns a setting on, so '
                            'its default must be False')
        if field.type is bool and meta['negation']:
            group.add_argument(flag, action='store_const', const=True,
                               help=_help(field, cls), **common)
            group.add_argument(_flag(meta['negation']), action='store_const',
                               const=False, help=meta['negation_help'],
                               **common)
        elif field.type is bool:
            group.add_argument(flag, action='store_true',
                               help=_help(field, cls),
                               **common)
        else:
            group.add_argument(flag, type=meta['type'] or str,
                               choices=meta['choices'], help=_help(field, cls),
                               nargs=meta.get('nargs'), **common)
        if field.name == 'log_level':
            group.add_argument('-q', '--quiet', action='store_const',
                               const=LOG_LEVELS[0], help='--log-level '
                               f'{LOG_LEVELS[0]}', **common)
            group.add_argument('-v', '--verbose', action='store_const',
                               const=LOG_LEVELS[-1], help='--log-level '
                               f'{LOG_LEVELS[-1]}', **common)
    return parser


def config_from_flags(given, cls=PretrainConfig):
    """The configuration the flags ``given`` ask for: the defaults, then the
    recipe's values, then the flags themselves."""
    return cls(**{**RECIPES[given.get('recipe', 'book')], **given})


def command_line(config, drop=()):
    """The flags that give ``config`` (every field off its default, and
    the required ones), as one string: ``--task qnli --lr 0.0003``."""
    import shlex
    words = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if (f.name in drop or not f.metadata['flag']
                or (value == f.default and not f.metadata['required'])):
            continue
        if isinstance(value, bool):
            if value or f.metadata['negation']:
                words.append(_flag(f.name if value
                                   else f.metadata['negation']))
        elif isinstance(value, (list, tuple)):
            words += [_flag(f.name)] + [shlex.quote(str(v)) for v in value]
        else:
            words += [_flag(f.name), shlex.quote(str(value))]
    return ' '.join(words)


def differing_settings(saved, config):
    """The settings a resumed run must keep (``resume='same'``) in which
    ``saved`` (a configuration's :meth:`to_dict`) and ``config`` differ."""
    return [f.name for f in dataclasses.fields(config)
            if f.metadata['resume'] == 'same'
            and saved.get(f.name, f.default) != getattr(config, f.name)]


def resumed_config(saved, given, cls=PretrainConfig):
    """The configuration of ``--resume``: the saved run's ``same`` and
    ``limit`` settings, the command's own ``free`` ones, and any ``limit``
    given again.  A ``same`` setting given with another value is an error
    naming the flag."""
    saved = cls.from_dict(saved).to_dict()
    values = {}
    for field in dataclasses.fields(cls):
        name, kind = field.name, field.metadata['resume']
        if kind == 'free':
            values[name] = given.get(name, field.default)
        elif name in given and kind == 'limit':
            values[name] = given[name]
        else:
            if name in given and given[name] != saved[name]:
                raise GluonBertError(
                    f'{name} {given[name]} differs from the run being '
                    f'resumed ({saved[name]}): drop {name}, or start a new '
                    'run in another save_dir', [name, 'save_dir'])
            values[name] = saved[name]
    return cls(**values)
