#!/usr/bin/env node
// The CDK CLI's entry point (cdk.json "app"): `npx cdk synth`, `npx cdk deploy CurfewHub`.
import { buildCurfewApp } from '../lib/app';

buildCurfewApp();
