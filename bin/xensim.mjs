#!/usr/bin/env node
// The xensim command: registers tsx so Node can load the TypeScript sources,
// then runs cli/main.ts and exits with its code.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../cli/main.ts');
process.exitCode = await run(process.argv);
