/**
 * What the QR code in a mock image encodes. Real WeChat codes open the mini program and cannot be read back;
 * the mock's encode the request instead, so a test can decode a stored image and prove it is the code of
 * the row it was stored for.
 *
 * - B (`unlimited`): `wxacode|<appid>|unlimited|page=<page, "" for the home page>|scene=<scene>|env=<env>`
 * - A (`code`):      `wxacode|<appid>|code|path=<path>|env=<env>`
 * - C (`qrcode`):    `wxacode|<appid>|qrcode|path=<path>` (C has no env_version)
 *
 * `env` is the request's env_version, `release` when absent. Width and colours change the picture, not the text.
 */
import type { Kind } from '../wechat/params.js';

function text(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

export function codeContent(appid: string, kind: Kind, body: Record<string, unknown>): string {
  const env = text(body.env_version, 'release');
  switch (kind) {
    case 'unlimited':
      return `wxacode|${appid}|unlimited|page=${text(body.page, '')}|scene=${text(body.scene, '')}|env=${env}`;
    case 'code':
      return `wxacode|${appid}|code|path=${text(body.path, '')}|env=${env}`;
    case 'qrcode':
      return `wxacode|${appid}|qrcode|path=${text(body.path, '')}`;
  }
}
