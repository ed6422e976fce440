/**
 * The webhook's settings and the files they name: every problem in one ConfigError, each line
 * starting with the flag or variable to fix, as the proxy's settings do. The TLS pair and the
 * template are real files (certificates made with openssl).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../src/errors';
import {
  formatWebhookHelp,
  loadWebhookConfig,
  parseWebhookCommandLine,
  unknownWebhookVariables,
  webhookEnvName,
  WEBHOOK_SETTINGS,
} from '../../src/webhook/settings';
import { parseSidecarTemplate } from '../../src/webhook/template';
import { createCertificateAuthority, issueServerCertificate, type ServerCertificate } from '../helpers/tls-certificates';

const EXAMPLE = path.resolve(__dirname, '..', '..', 'config', 'webhook-sidecar-template.yaml');

let dir: string;
let server: ServerCertificate;
let other: ServerCertificate;
let env: Record<string, string>;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webhook-settings-'));
  const ca = createCertificateAuthority(dir);
  server = issueServerCertificate(ca, dir, 'server');
  other = issueServerCertificate(ca, dir, 'other');
  env = {
    IDEMPOTENCY_WEBHOOK_TLS_CERT: server.certPath,
    IDEMPOTENCY_WEBHOOK_TLS_KEY: server.keyPath,
    IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: EXAMPLE,
  };
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function problemsOf(argv: readonly string[], given: Record<string, string | undefined>): readonly string[] {
  try {
    loadWebhookConfig({ argv, env: given });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

function writeTemplate(text: string): string {
  const file = path.join(dir, `template-${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(file, text);
  return file;
}

describe('loadWebhookConfig', () => {
  it('fills the defaults and reads the template', () => {
    const config = loadWebhookConfig({ argv: [], env });
    expect(config).toMatchObject({ port: 8443, host: '0.0.0.0', tlsReloadIntervalMs: 10_000, logLevel: 'info', sidecarTemplate: EXAMPLE });
    expect(config.template).toMatchObject({ nativeSidecar: false, proxyPort: 8480, adminPort: 9480 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('flags win over variables', () => {
    const config = loadWebhookConfig({ argv: ['--port', '9443', '--tls-reload-interval=250ms'], env: { ...env, IDEMPOTENCY_WEBHOOK_PORT: '7443' } });
    expect(config.port).toBe(9443);
    expect(config.tlsReloadIntervalMs).toBe(250);
  });

  it('names every missing required setting', () => {
    expect(problemsOf([], {})).toEqual([
      'IDEMPOTENCY_WEBHOOK_TLS_CERT: is required: the path of the PEM serving certificate, e.g. /etc/webhook/tls/tls.crt',
      'IDEMPOTENCY_WEBHOOK_TLS_KEY: is required: the path of its PEM private key, e.g. /etc/webhook/tls/tls.key',
      'IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: is required: the path of the sidecar template, e.g. /etc/webhook/template/sidecar.yaml',
    ]);
  });

  it('names a bad value by the flag or variable that gave it', () => {
    expect(problemsOf(['--port', '65536'], env)).toEqual(['--port: "65536" is not a port; use a whole number from 1 to 65535, or 0 for any free port']);
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_PORT: 'https' })).toEqual([
      'IDEMPOTENCY_WEBHOOK_PORT: "https" is not a port; use a whole number from 1 to 65535, or 0 for any free port',
    ]);
    // 0: a free port, bound at start and named in the "listening" line.
    expect(loadWebhookConfig({ argv: ['--port', '0'], env }).port).toBe(0);
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_TLS_RELOAD_INTERVAL: '10' })[0]).toMatch(/^IDEMPOTENCY_WEBHOOK_TLS_RELOAD_INTERVAL: "10" is not a duration/);
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_LOG_LEVEL: 'loud' })[0]).toMatch(/^IDEMPOTENCY_WEBHOOK_LOG_LEVEL: "loud" is not accepted/);
    expect(problemsOf(['--host', 'a b'], env)[0]).toMatch(/^--host: "a b" is not an address/);
  });

  it('names unknown flags with a suggestion, and stray arguments', () => {
    expect(problemsOf(['--tls-crt', 'x', 'stray'], env)).toEqual([
      '--tls-crt: is not a flag of the webhook; did you mean --tls-cert? (see webhook --help)',
      'command line: unexpected argument "stray"; settings are flags, e.g. --port 8443',
    ]);
  });

  it('refuses unreadable, non-PEM and mismatched TLS files, naming the setting and the file', () => {
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_TLS_CERT: path.join(dir, 'absent.crt') })[0]).toMatch(
      /^IDEMPOTENCY_WEBHOOK_TLS_CERT .*absent\.crt: cannot be read \(ENOENT/,
    );
    const garbage = writeTemplate('not a certificate');
    expect(problemsOf(['--tls-key', garbage], env)).toEqual([expect.stringMatching(/^--tls-key .*: is not a PEM private key/)]);
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_TLS_CERT: garbage })).toEqual([
      expect.stringMatching(/^IDEMPOTENCY_WEBHOOK_TLS_CERT .*: is not a PEM certificate/),
    ]);
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_TLS_KEY: other.keyPath })).toEqual([
      'IDEMPOTENCY_WEBHOOK_TLS_CERT and IDEMPOTENCY_WEBHOOK_TLS_KEY: the key does not belong to the certificate',
    ]);
  });

  it('refuses a template with problems, naming the setting, the file and the key', () => {
    const file = writeTemplate('image: x\nports: [{ name: metrics, containerPort: 1 }]\n');
    expect(problemsOf([], { ...env, IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: file })).toEqual([
      `IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE ${file}: ports[0]: the sidecar listens on two ports only: name them idem-proxy and idem-admin`,
    ]);
  });
});

describe('parseSidecarTemplate', () => {
  const problems = (text: string): readonly string[] => {
    const parsed = parseSidecarTemplate(text, 'T');
    return 'problems' in parsed ? parsed.problems : [];
  };

  it('accepts the example template shipped in config/, ports as defaults and nativeSidecar taken out', () => {
    const parsed = parseSidecarTemplate(fs.readFileSync(EXAMPLE, 'utf8'), 'T');
    if ('problems' in parsed) throw new Error(parsed.problems.join('\n'));
    expect(parsed.template).toMatchObject({ nativeSidecar: false, proxyPort: 8480, adminPort: 9480 });
    expect(parsed.template.container).not.toHaveProperty('nativeSidecar');
    expect(parsed.template.container).not.toHaveProperty('ports');
    expect(parsed.template.container).not.toHaveProperty('name');
    expect(parsed.template.container['image']).toBe('idempotency-sidecar:0.1.0');
  });

  it('accepts a bare JSON Container and applies the defaults', () => {
    expect(parseSidecarTemplate('{"image": "sidecar:1"}', 'T')).toEqual({
      template: { nativeSidecar: false, volumes: [], proxyPort: 8480, adminPort: 9480, container: { image: 'sidecar:1' } },
    });
  });

  it('takes the default ports from the declared ports or from IDEMPOTENCY_PORT and IDEMPOTENCY_ADMIN_PORT, and drops those variables', () => {
    const parsed = parseSidecarTemplate(
      [
        'nativeSidecar: true',
        'image: sidecar:1',
        'ports: [{ name: idem-proxy, containerPort: 18080 }]',
        'env:',
        '  - { name: IDEMPOTENCY_PORT, value: "18080" }',
        '  - { name: IDEMPOTENCY_ADMIN_PORT, value: "19090" }',
        '  - { name: IDEMPOTENCY_TTL, value: 1h }',
      ].join('\n'),
      'T',
    );
    expect(parsed).toEqual({
      template: { nativeSidecar: true, volumes: [], proxyPort: 18080, adminPort: 19090, container: { image: 'sidecar:1', env: [{ name: 'IDEMPOTENCY_TTL', value: '1h' }] } },
    });
  });

  it('takes the pod volumes out of the container: the Secrets its mounts name', () => {
    const parsed = parseSidecarTemplate(
      [
        'volumes:',
        '  - name: idempotency-sidecar-tls',
        '    secret: { secretName: payments-tls, items: [{ key: tls.crt, path: tls.crt }, { key: tls.key, path: tls.key }] }',
        'image: sidecar:1',
        'volumeMounts: [{ name: idempotency-sidecar-tls, mountPath: /var/run/secrets/idempotency-sidecar/tls, readOnly: true }]',
      ].join('\n'),
      'T',
    );
    if ('problems' in parsed) throw new Error(parsed.problems.join('\n'));
    expect(parsed.template.volumes).toEqual([
      { name: 'idempotency-sidecar-tls', secret: { secretName: 'payments-tls', items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] } },
    ]);
    expect(parsed.template.container).not.toHaveProperty('volumes');
    expect(parsed.template.container['volumeMounts']).toEqual([
      { name: 'idempotency-sidecar-tls', mountPath: '/var/run/secrets/idempotency-sidecar/tls', readOnly: true },
    ]);
  });

  it('refuses volumes the pod could not take, and mounts of volumes the template does not declare', () => {
    expect(
      problems(
        [
          'volumes:',
          '  - { name: keys, secret: { secretName: k } }',
          '  - { name: keys, secret: { secretName: k2 } }',
          '  - { name: Not_A_Label, emptyDir: {} }',
          '  - { name: idempotency-sidecar-config, emptyDir: {} }',
          '  - just-a-string',
          'image: sidecar:1',
          'volumeMounts:',
          '  - { name: keys, mountPath: /keys }',
          '  - { name: Not_A_Label, mountPath: /bad }',
          '  - { name: app-data, mountPath: /data }',
        ].join('\n'),
      ),
    ).toEqual([
      'T: volumes[1]: keys is declared twice; a pod\'s volume names are unique',
      'T: volumes[2]: is not a pod volume; each item needs a name of lower-case letters, digits and - (at most 63), e.g. idempotency-sidecar-tls',
      "T: volumes[3]: idempotency-sidecar-config is the webhook's, from idempotency-sidecar.io/config-map; use another name",
      'T: volumes[4]: is not a pod volume; each item needs a name of lower-case letters, digits and - (at most 63), e.g. idempotency-sidecar-tls',
      'T: volumeMounts[2]: names volume "app-data", which volumes: does not declare; declare it there, and the webhook adds it to each pod',
    ]);
    expect(problems('volumes: { name: x }\nimage: sidecar:1')).toEqual([
      'T: volumes: a mapping is not a list of pod volumes; write - name: ... secret: { secretName: ... } items',
    ]);
  });

  it('refuses what only a pod can say, and defaults that contradict each other', () => {
    expect(
      problems(
        [
          'name: proxy',
          'image: sidecar:1',
          'restartPolicy: Always',
          'ports: [{ name: idem-proxy, containerPort: 8480 }, { containerPort: 9000 }]',
          'env:',
          '  - { name: IDEMPOTENCY_UPSTREAM, value: "http://x" }',
          '  - { name: IDEMPOTENCY_PORT, value: "8481" }',
          '  - { name: IDEMPOTENCY_ADMIN_PORT, valueFrom: { fieldRef: { fieldPath: metadata.name } } }',
          '  - { name: IDEMPOTENCY_CONFIG, value: /x.yaml }',
          'volumeMounts: [{ name: idempotency-sidecar-config, mountPath: /x }]',
        ].join('\n'),
      ),
    ).toEqual([
      'T: name: "proxy": leave it out or write idempotency-sidecar; the webhook recognises injected pods by this name',
      'T: restartPolicy: leave it out: nativeSidecar (or the pod annotation) decides it',
      'T: ports[1]: the sidecar listens on two ports only: name them idem-proxy and idem-admin',
      'T: env[0]: IDEMPOTENCY_UPSTREAM is set per pod by the webhook (from idempotency-sidecar.io/upstream-port); remove it',
      'T: env[1] (IDEMPOTENCY_PORT): 8481 contradicts ports[0] (8480); both give the proxy port',
      'T: env[2]: IDEMPOTENCY_ADMIN_PORT is the default of a port the webhook sets per pod: give a literal port as value, or leave it out',
      'T: env[3]: IDEMPOTENCY_CONFIG is set per pod by the webhook (from idempotency-sidecar.io/config-map); remove it',
      "T: volumeMounts[0]: idempotency-sidecar-config at /etc/idempotency-sidecar is the webhook's, from idempotency-sidecar.io/config-map; use another name and path",
    ]);
  });

  it('says how to fix bad options and bad YAML', () => {
    expect(problems('nativeSidecar: maybe\nimage: x')).toEqual(['T: nativeSidecar: "maybe" is not a boolean; use true or false']);
    expect(problems('image: x\nports: [{ name: idem-proxy, containerPort: 9000 }, { name: idem-admin, containerPort: 9000 }]')).toEqual([
      'T: ports: the proxy and admin ports are both 9000; the two listeners need different ports',
    ]);
    expect(problems('image: x\nports: [{ name: idem-admin, containerPort: 70000 }]')).toEqual([
      'T: ports[0].containerPort: 70000 is not a port; use a whole number from 1 to 65535',
    ]);
    expect(problems('env: []')).toEqual(['T: image: is missing; give the sidecar image, e.g. ghcr.io/example/idempotency-sidecar:0.1.0']);
    expect(problems('image: [')[0]).toMatch(/^T:1:\d+: is not valid YAML or JSON/);
    expect(problems('- a')).toEqual(['T: is not a mapping; write the Kubernetes Container to inject (image:, env:, ...), optionally with nativeSidecar:']);
  });
});

describe('the webhook command line and help', () => {
  it('--help wins, even next to a typo', () => {
    expect(parseWebhookCommandLine(['--prot', '1', '--help']).action).toBe('help');
    expect(parseWebhookCommandLine(['--config-test']).action).toBe('config-test');
  });

  it('lists every setting with its flag and variable', () => {
    const help = formatWebhookHelp();
    for (const name of Object.keys(WEBHOOK_SETTINGS)) expect(help).toContain(webhookEnvName(name));
    expect(help).toContain('--tls-cert VALUE, IDEMPOTENCY_WEBHOOK_TLS_CERT  (default: required)');
    expect(help).toContain('--sidecar-template VALUE, IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE');
  });

  it('points out IDEMPOTENCY_WEBHOOK_ variables that name no setting', () => {
    expect(unknownWebhookVariables({ IDEMPOTENCY_WEBHOOK_TLS_CRT: 'x', IDEMPOTENCY_WEBHOOK_PORT: '1', IDEMPOTENCY_PORT: '2' })).toEqual([
      'IDEMPOTENCY_WEBHOOK_TLS_CRT',
    ]);
  });
});
