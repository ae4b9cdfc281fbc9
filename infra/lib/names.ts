/**
 * Names that tie the hub and the spokes together. A spoke's trust policy names the hub's router
 * and worker roles, and the hub may only assume roles with the spoke role's name, so these are
 * fixed names rather than generated ones (which also means one hub per AWS account).
 */

/** The router Lambda's execution role; spoke trust policies name it. */
export const HUB_ROUTER_ROLE_NAME = 'curfew-hub-router';

/** The worker Lambda's execution role; spoke trust policies name it. */
export const HUB_WORKER_ROLE_NAME = 'curfew-hub-worker';

/** The role every managed (spoke) account holds for the hub to assume. */
export const DEFAULT_SPOKE_ROLE_NAME = 'curfew-spoke';

/** The hub's event bus, which receives spoke change events. */
export const HUB_EVENT_BUS_NAME = 'curfew-hub';

/** Lambda function names: `aws lambda invoke --function-name curfew-router` is part of the CLI story. */
export const FUNCTION_NAMES = {
  poller: 'curfew-poller',
  router: 'curfew-router',
  worker: 'curfew-worker',
} as const;

/** The Cargo packages (and binaries) of the three Lambdas, relative to the repository root. */
export const LAMBDA_CRATES = {
  poller: { manifest: 'lambdas/poller/Cargo.toml', binary: 'curfew-poller' },
  router: { manifest: 'lambdas/router/Cargo.toml', binary: 'curfew-router' },
  worker: { manifest: 'lambdas/worker/Cargo.toml', binary: 'curfew-worker' },
} as const;
