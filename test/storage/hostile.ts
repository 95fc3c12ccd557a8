/** Row values that would escape or confuse a path or URL if they reached a key unencoded. */
export const HOSTILE_VALUES = [
  '../x',
  '..',
  '.',
  '/',
  '?',
  '#',
  'a/../../b',
  '~',
  '.hidden',
  '\\',
  '%2e%2e',
  'a\u0000b',
  `pages/a?${'q=1&'.repeat(300)}`,
];
