// ZITADEL's official Node client (@zitadel/node, pinned in package.json), unchanged, against
// a real secretgen server: it reads, updates and lists secret generators over gRPC, and gets
// the statuses it expects. The server is the binary in SECRETGEN_BIN (default: the debug
// build), started here on free ports with a fresh data directory.
//
//   cd tests/node && npm ci && npm test

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { createAdminClient, createAccessTokenInterceptor } from '@zitadel/node/dist/api/index.js';
import { SecretGeneratorType } from '@zitadel/node/dist/api/generated/zitadel/settings.js';

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.SECRETGEN_BIN ?? join(here, '..', '..', 'target', 'debug', 'secretgen');
const token = 'sg_node_client_test_token_0123456789abcdefghijklmnopqrstuv';

// gRPC status codes (SPEC section 5's table).
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const UNIMPLEMENTED = 12;
const UNAUTHENTICATED = 16;

let server;
let dataDir;
let endpoint;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'secretgen-node-'));
  server = spawn(
    binary,
    ['serve', '--listen', '127.0.0.1:0', '--grpc-listen', '127.0.0.1:0', '--workers', '1',
      '--data-dir', join(dataDir, 'data'), '--bootstrap-token', token],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SECRETGEN_LOG: 'warn' } },
  );
  const lines = createInterface({ input: server.stdout });
  endpoint = await new Promise((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`secretgen exited with ${code} before listening`)));
    lines.on('line', (line) => {
      const grpc = line.match(/^listening on grpc:\/\/(.+)$/);
      if (grpc) resolve(grpc[1]);
    });
  });
});

after(() => {
  server?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const admin = () => createAdminClient(endpoint, createAccessTokenInterceptor(token));

/** The error a call fails with. */
async function failure(call) {
  try {
    await call;
  } catch (error) {
    return error;
  }
  assert.fail('the call succeeded');
}

test('reads a secret generator', async () => {
  const answer = await admin().getSecretGenerator({
    generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_OTP_SMS,
  });
  const generator = answer.secretGenerator;
  assert.equal(generator.generatorType, SecretGeneratorType.SECRET_GENERATOR_TYPE_OTP_SMS);
  assert.equal(generator.length, 8);
  assert.equal(Number(generator.expiry.seconds), 300);
  assert.equal(generator.includeDigits, true);
  assert.equal(generator.includeUpperLetters, false);
  assert.ok(Number(generator.details.sequence) > 0);
  assert.ok(generator.details.changeDate instanceof Date);
  assert.notEqual(generator.details.resourceOwner, '');
});

test('updates a secret generator, then reads the change', async () => {
  const client = admin();
  const updated = await client.updateSecretGenerator({
    generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_PASSWORD_RESET_CODE,
    length: 10,
    expiry: { seconds: 900, nanos: 0 },
    includeLowerLetters: false,
    includeUpperLetters: true,
    includeDigits: true,
    includeSymbols: false,
  });
  const sequence = Number(updated.details.sequence);
  assert.ok(sequence > 0);
  const read = await client.getSecretGenerator({
    generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_PASSWORD_RESET_CODE,
  });
  assert.equal(read.secretGenerator.length, 10);
  assert.equal(Number(read.secretGenerator.expiry.seconds), 900);
  assert.equal(Number(read.secretGenerator.details.sequence), sequence);
});

test('lists every secret generator, and by type', async () => {
  const client = admin();
  const all = await client.listSecretGenerators({});
  assert.equal(Number(all.details.totalResult), 8);
  assert.deepEqual(all.result.map((g) => g.generatorType), [1, 2, 3, 4, 5, 6, 7, 8]);
  const one = await client.listSecretGenerators({
    queries: [{ typeQuery: { generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_APP_SECRET } }],
  });
  assert.equal(one.result.length, 1);
  assert.equal(one.result[0].length, 64);
});

test('gets the statuses it expects', async () => {
  const anonymous = createAdminClient(endpoint);
  const unauthenticated = await failure(
    anonymous.getSecretGenerator({ generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_OTP_SMS }),
  );
  assert.equal(unauthenticated.code, UNAUTHENTICATED, String(unauthenticated));

  const wrong = createAdminClient(endpoint, createAccessTokenInterceptor('sg_wrong'));
  const refused = await failure(wrong.listSecretGenerators({}));
  assert.equal(refused.code, UNAUTHENTICATED, String(refused));

  const invalid = await failure(
    admin().updateSecretGenerator({
      generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_OTP_SMS,
      length: 0,
    }),
  );
  assert.equal(invalid.code, INVALID_ARGUMENT, String(invalid));
  assert.match(invalid.details, /length/);

  const unspecified = await failure(
    admin().getSecretGenerator({ generatorType: SecretGeneratorType.SECRET_GENERATOR_TYPE_UNSPECIFIED }),
  );
  assert.equal(unspecified.code, INVALID_ARGUMENT, String(unspecified));

  const unimplemented = await failure(admin().listIAMMembers({}));
  assert.equal(unimplemented.code, UNIMPLEMENTED, String(unimplemented));
  assert.notEqual(PERMISSION_DENIED, UNIMPLEMENTED);
});
