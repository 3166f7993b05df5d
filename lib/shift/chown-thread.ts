// A walker thread of the shift (lib/sys/walk-pool.ts): a module of its own, so
// that the build bundles it as a real file (dist/chown-thread.cjs).

import { serveThread } from '../sys/walk-pool';
import { chownVisitor } from './chown';

serveThread(chownVisitor);
