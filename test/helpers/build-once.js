// jest globalSetup: names the Node that runs the suite (and refuses an unsupported one), then makes
// sure dist/ is current, since the integration suites run the compiled sidecar.
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { checkNodeRuntime } = require('./node-runtime');

module.exports = async function buildOnce() {
  checkNodeRuntime();
  execFileSync(process.execPath, [path.resolve(__dirname, '..', '..', 'scripts', 'ensure-built.js')], { stdio: 'inherit' });
};
