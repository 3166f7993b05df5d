// Loading oci-userns's configuration file: which path, validation against
// schemas/config-file.schema.json (an unknown or mistyped key is an error
// naming the key), defaults for what the file leaves out, and the
// environment overrides a hooks.d entry can set.

import { ConfigError, errnoCode, InputError, systemError } from '../errors';
import { DEFAULT_CONFIG_PATH, DEFAULTS, type Config, type LogLevel } from './config';
import { readRegularFileSync } from '../oci/input';
import { parseValidated } from '../oci/json';

const MAX_CONFIG_BYTES = 1024 * 1024;
const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export interface ConfigSource {
  /** --config on the command line. */
  path?: string;
  /** The environment: OCI_USERNS_CONFIG, OCI_USERNS_LOG_LEVEL, OCI_USERNS_LOG_FILE. */
  env?: NodeJS.ProcessEnv;
}

type PartialConfig = { [K in keyof Config]?: Config[K] extends object ? Partial<Config[K]> : Config[K] };

/** Defaults overlaid with the file's keys, one level deep (every section is flat). */
export function mergeConfig(file: PartialConfig): Config {
  const merged = { ...DEFAULTS } as Record<string, unknown>;
  for (const [key, value] of Object.entries(file)) {
    if (key === '$schema') continue;
    const base = (DEFAULTS as unknown as Record<string, unknown>)[key];
    merged[key] = base !== null && typeof base === 'object' ? { ...base, ...(value as object) } : value;
  }
  return merged as unknown as Config;
}

export function configPath(source: ConfigSource): { path: string; explicit: boolean } {
  const fromEnv = source.env?.OCI_USERNS_CONFIG;
  if (source.path) return { path: source.path, explicit: true };
  if (fromEnv) return { path: fromEnv, explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
}

export async function loadConfig(source: ConfigSource = {}): Promise<Config> {
  const { path, explicit } = configPath(source);
  let text: string | undefined;
  try {
    text = readRegularFileSync(path, MAX_CONFIG_BYTES, `config file ${path}`).toString('utf8');
  } catch (error) {
    if (error instanceof InputError) throw new ConfigError(error.message, { path, cause: error });
    const code = errnoCode(error);
    if (code !== 'ENOENT' || explicit) {
      if (code === 'ENOENT') throw new ConfigError(`config file ${path} does not exist`, { path, hint: 'create it or drop --config/OCI_USERNS_CONFIG to use the defaults' });
      throw systemError('cannot read config file', path, error);
    }
  }
  let config = DEFAULTS;
  if (text !== undefined) {
    try {
      config = mergeConfig(parseValidated<PartialConfig>(text, 'config-file', `config file ${path}`, { path }));
    } catch (error) {
      if (error instanceof InputError) throw new ConfigError(error.message, { path, cause: error });
      throw error;
    }
  }
  return applyEnvironment(config, source.env ?? {});
}

function applyEnvironment(config: Config, env: NodeJS.ProcessEnv): Config {
  const level = env.OCI_USERNS_LOG_LEVEL;
  const file = env.OCI_USERNS_LOG_FILE;
  if (level !== undefined && !LOG_LEVELS.includes(level as LogLevel)) {
    throw new ConfigError(`OCI_USERNS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`);
  }
  if (file !== undefined && !file.startsWith('/')) {
    throw new ConfigError(`OCI_USERNS_LOG_FILE must be an absolute path, got '${file}'`);
  }
  return { ...config, logLevel: (level as LogLevel | undefined) ?? config.logLevel, logFile: file ?? config.logFile };
}
