/** Entry of a forked benchmark child: runs the task given as its argument and sends back what it measured. */
import { type ChildTask, runTask } from './tasks.js';

const result = await runTask(JSON.parse(process.argv[2]!) as ChildTask);
process.send!(result, () => process.exit(0));
