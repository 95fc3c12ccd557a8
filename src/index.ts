export * from './config.js';
export * from './mock/index.js';
export * from './wechat/errors.js';
export * from './wechat/params.js';
