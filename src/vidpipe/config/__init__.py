"""``pipeline.toml``: loaded, filled in and validated.

==============  ===========================================================
:mod:`.schema`  how a key is checked (:class:`Rule`), the errors that name
                the file and the key (:class:`ConfigError`, exit status 78)
:mod:`.sections` the sections, each key declared once with its rule
:mod:`.loader`  reading the file, the checks that span keys, stage options
==============  ===========================================================

Everything is importable from here, as before the split.
"""

from vidpipe.config.schema import (ConfigError, EX_CONFIG, OptionRules, Rule, _defaults,
                                   check_value, fill_section, key, rules_of, unknown_key)
from vidpipe.config.sections import (ACCELERATOR_RE, CAMERA_RULES, COLLECTOR_RULES, CameraConfig,
                                     CollectorConfig, DEFAULT_PATH, DEFAULT_RUNTIME_DIR,
                                     DISPATCH_MODES, HANDLER_RULES, HandlerConfig, OUTPUTS,
                                     PIPELINE_RULES, PipelineConfig, RECORD_FORMATS,
                                     SECURITY_RULES, SecurityConfig, TOP_LEVEL, connect_from_bind)
from vidpipe.config.loader import (Config, IPC_PATH_MAX, LISTEN_RE, LOCAL_HOSTS, UNSIZED_FRAME,
                                   config_from_dict, default_path, load_config, local_listen,
                                   make_camera, split_listen, stage_options, unreadable)

__all__ = ['ACCELERATOR_RE', 'CAMERA_RULES', 'COLLECTOR_RULES', 'CameraConfig', 'CollectorConfig',
           'Config', 'ConfigError', 'DEFAULT_PATH', 'DEFAULT_RUNTIME_DIR', 'DISPATCH_MODES',
           'EX_CONFIG', 'HANDLER_RULES', 'HandlerConfig', 'IPC_PATH_MAX', 'LISTEN_RE',
           'LOCAL_HOSTS', 'OUTPUTS', 'OptionRules', 'PIPELINE_RULES', 'PipelineConfig',
           'RECORD_FORMATS', 'Rule', 'SECURITY_RULES', 'SecurityConfig', 'TOP_LEVEL',
           'UNSIZED_FRAME', '_defaults', 'check_value', 'config_from_dict', 'connect_from_bind',
           'default_path', 'fill_section', 'key', 'load_config', 'local_listen', 'make_camera',
           'rules_of', 'split_listen', 'stage_options', 'unknown_key', 'unreadable']
