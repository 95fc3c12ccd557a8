export { type MockAdmin, mockAdmin } from './admin.js';
export { codeContent } from './content.js';
export { DEFAULT_MOCK_APPS, MOCK_DEFAULTS, mockPatchProblems } from './options.js';
export * from './server.js';
