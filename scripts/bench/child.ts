/**
 * Entry of a forked benchmark child: runs the task given as its argument and sends back what it measured. A task
 * that starts together with others says `{ ready: true }` once prepared and waits for the parent's `go`.
 */
import { type ChildTask, runTask } from './tasks.js';

const ready = () =>
  new Promise<void>((resolve) => {
    process.once('message', () => resolve());
    process.send!({ ready: true });
  });
const result = await runTask(JSON.parse(process.argv[2]!) as ChildTask, ready);
process.send!({ result }, () => process.exit(0));
