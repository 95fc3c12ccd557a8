import { describe, expect, it } from 'vitest';
import { mockPatchProblems } from '../../src/mock/options.js';

describe('mock options', () => {
  it('never echoes an apps value, which may be appid:secret typed as a string', () => {
    expect(mockPatchProblems({ apps: 'wx1:sekrit' })).toEqual([
      'apps must be an object mapping appid to secret, got a string',
    ]);
    expect(mockPatchProblems({ apps: ['wx1:sekrit'] })).toEqual([
      'apps must be an object mapping appid to secret, got an array',
    ]);
  });
});
