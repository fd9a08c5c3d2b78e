// Drives the Cairn guest agent with dstack's public JavaScript SDK (@phala/dstack-sdk,
// pinned in package.json) over its unix socket: many sequential calls, then many
// concurrent ones, counting every failure by its error code.
//
// Usage: node stress.js <agent unix socket> <sequential calls> <concurrent calls>
// Prints one JSON object on stdout; run by guest/tests/it/js_sdk.rs.
"use strict";

const { DstackClient } = require("@phala/dstack-sdk");

const [socket, sequentialArg, concurrentArg] = process.argv.slice(2);
const client = new DstackClient(socket);

// The calls the SDK makes most: cheap ones without a body the agent reads (Info,
// Version) and ones with a body (GetKey, GetQuote, Sign, Verify).
const calls = [
  () => client.info(),
  () => client.version(),
  () => client.getKey("stress/key", "stress"),
  () => client.getQuote("stress"),
  () => client.sign("secp256k1", "stress"),
  async () => {
    const s = await client.sign("secp256k1", "stress");
    const v = await client.verify("secp256k1", "stress", s.signature, s.public_key);
    if (!v.valid) throw new Error("valid signature reported invalid");
  },
];

function record(stats, error) {
  stats.failures += 1;
  const code = error.code || error.message;
  stats.errors[code] = (stats.errors[code] || 0) + 1;
}

async function sequential(n) {
  const stats = { calls: n, failures: 0, errors: {} };
  for (let i = 0; i < n; i++) {
    try {
      await calls[i % calls.length]();
    } catch (e) {
      record(stats, e);
    }
  }
  return stats;
}

async function concurrent(n) {
  const stats = { calls: n, failures: 0, errors: {} };
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      calls[i % calls.length]().catch((e) => record(stats, e))
    )
  );
  return stats;
}

(async () => {
  const seq = await sequential(Number(sequentialArg));
  const conc = await concurrent(Number(concurrentArg));
  process.stdout.write(JSON.stringify({ sequential: seq, concurrent: conc }) + "\n");
})().catch((e) => {
  process.stderr.write(`stress.js: ${e.stack || e}\n`);
  process.exit(1);
});
