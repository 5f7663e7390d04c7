"""``pipeline.toml``: loaded, filled in and validated.

==============  ===========================================================
:mod:`.schema`  how a key is checked (:class:`Rule`), the errors that name
                the file and the key (:class:`ConfigError`, exit status 78)
:mod:`.sections` the sections, each key declared once with its rule
:mod:`.loader`  reading the file, the checks that span keys, stage options
==============  ===========================================================

Everything is importable from here, as before the split.
"""

from vidpipe.config.schema import (check_value, ConfigError, _defaults, EX_CONFIG, fill_section,
                                   fill_tabled_section, key, new_names, OptionRules, Rule,
                                   rules_of, tables_of, unknown_key)
from vidpipe.config.sections import (ACCELERATOR_RE, CAMERA_RULES, CameraConfig, COLLECTOR_RULES,
                                     COLLECTOR_TABLES, CollectorConfig, connect_from_bind,
                                     DEFAULT_PATH, DEFAULT_RUNTIME_DIR, DISPATCH_MODES,
                                     HANDLER_RULES, HandlerConfig, OUTPUTS, PIPELINE_RULES,
                                     PipelineConfig, RECORD_FORMATS, SECURITY_RULES,
                                     SecurityConfig, TOP_LEVEL)
from vidpipe.config.loader import (Config, config_from_dict, default_path, IPC_PATH_MAX, LISTEN_RE,
                                   load_config, LOCAL_HOSTS, local_listen, make_camera,
                                   split_listen, stage_options, unreadable, UNSIZED_FRAME)

__all__ = ['_defaults', 'ACCELERATOR_RE', 'CAMERA_RULES', 'CameraConfig', 'check_value',
           'COLLECTOR_RULES', 'COLLECTOR_TABLES', 'CollectorConfig', 'Config', 'config_from_dict',
           'ConfigError', 'connect_from_bind', 'DEFAULT_PATH', 'default_path',
           'DEFAULT_RUNTIME_DIR', 'DISPATCH_MODES', 'EX_CONFIG', 'fill_section',
           'fill_tabled_section', 'HANDLER_RULES', 'HandlerConfig', 'IPC_PATH_MAX', 'key',
           'LISTEN_RE', 'load_config', 'LOCAL_HOSTS', 'local_listen', 'make_camera', 'new_names',
           'OptionRules', 'OUTPUTS', 'PIPELINE_RULES', 'PipelineConfig', 'RECORD_FORMATS', 'Rule',
           'rules_of', 'SECURITY_RULES', 'SecurityConfig', 'split_listen', 'stage_options',
           'tables_of', 'TOP_LEVEL', 'unknown_key', 'unreadable', 'UNSIZED_FRAME']
