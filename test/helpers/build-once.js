// jest globalSetup: the integration suites run the compiled sidecar, so make sure dist/ is current.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

module.exports = async function buildOnce() {
  execFileSync(process.execPath, [path.resolve(__dirname, '..', '..', 'scripts', 'ensure-built.js')], { stdio: 'inherit' });
};
