#!/usr/bin/env node
'use strict';
// Thin launcher: the compiled CLI does the work (`npm run build` makes dist/; `npm start` builds when needed).
require('../dist/cli.js').main();
