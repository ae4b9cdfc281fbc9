#!/usr/bin/env node
// Synthesizes both stacks without cross-compiling the Lambdas and without the CDK CLI (no
// network, no AWS credentials): what CI's static checks (cfn-lint, checkov) read.
// Usage: node dist/bin/synth-offline.js [outdir]
import { buildCurfewApp } from '../lib/app';

const outdir = process.argv[2] ?? 'cdk.out';
const { app } = buildCurfewApp({ outdir, skipBundling: true });
const assembly = app.synth();
for (const stack of assembly.stacks) {
  console.log(`synthesized ${stack.stackName} -> ${stack.templateFullPath}`);
}
