// Which Node runs the suite, said in its output, and a stop when it is not one package.json's
// `engines` supports: a checkout's npm scripts get Node 24 from the `node` devDependency
// (node_modules/.bin comes first on their PATH), but jest started some other way may not.
const { engines } = require('../../package.json');

/** `^MAJOR.MINOR.PATCH`, the only form `engines.node` takes here. */
function supported(version, range) {
  const wanted = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(range);
  if (wanted === null) throw new Error(`package.json engines.node is ${JSON.stringify(range)}; this check reads only ^MAJOR.MINOR.PATCH`);
  const [major, minor, patch] = version.replace(/^v/, '').split('.').map(Number);
  const [wantMajor, wantMinor, wantPatch] = wanted.slice(1).map(Number);
  if (major !== wantMajor) return false;
  return minor > wantMinor || (minor === wantMinor && patch >= wantPatch);
}

function checkNodeRuntime() {
  console.log(`\nNode.js ${process.version} runs the tests (${process.execPath})`);
  if (!supported(process.version, engines.node)) {
    throw new Error(
      `Node.js ${process.version} is not one this project supports (package.json engines.node: ${engines.node}). ` +
        'Run the tests with `npm test` or `npx jest` after `npm ci`: the `node` devDependency puts a supported Node first on their PATH.',
    );
  }
}

module.exports = { checkNodeRuntime, supported };
