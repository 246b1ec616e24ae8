// The official AWS SDK for JavaScript v3 (`@aws-sdk/client-s3`, pinned by
// package-lock.json) as an independent client for
// tests/integration/test_40_storage.py: pointed at the S3 stand-in
// (tests/standins/s3_standin.py) it proves the stand-in right (what the SDK
// signs is accepted; the same under a wrong secret is refused) and reads
// back what the storage-s3 plugin stored. One JSON command on stdin (objects
// may be larger than an argument may be):
//   {endpoint, region, accessKeyId, secretAccessKey, forcePathStyle, bucket,
//    ops: [{op: "put", key, body (base64), contentType?}, {op: "get", key},
//          {op: "head", key}, {op: "list", prefix?, maxKeys?},
//          {op: "listAll", prefix?, maxKeys?} (follows continuation tokens),
//          {op: "delete", key}]}
// One JSON answer on stdout: [{ok: true, …} | {ok: false, name, status}],
// one per op (a failed op does not stop the others).
// Run with NODE_PATH=tests/sdk/node_modules.
'use strict';
const {
  S3Client, PutObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, DeleteObjectCommand,
} = require('@aws-sdk/client-s3');

async function run(client, bucket, o) {
  if (o.op === 'put') {
    const r = await client.send(new PutObjectCommand({
      Bucket: bucket, Key: o.key, Body: Buffer.from(o.body, 'base64'),
      ContentType: o.contentType,
    }));
    return {etag: r.ETag};
  }
  if (o.op === 'get') {
    const r = await client.send(new GetObjectCommand({Bucket: bucket, Key: o.key}));
    const bytes = Buffer.from(await r.Body.transformToByteArray());
    return {body: bytes.toString('base64'), contentType: r.ContentType,
            contentLength: r.ContentLength};
  }
  if (o.op === 'head') {
    const r = await client.send(new HeadObjectCommand({Bucket: bucket, Key: o.key}));
    return {contentLength: r.ContentLength, contentType: r.ContentType};
  }
  if (o.op === 'list' || o.op === 'listAll') {
    const keys = [];
    let token, pages = 0;
    do {
      const r = await client.send(new ListObjectsV2Command({
        Bucket: bucket, Prefix: o.prefix, MaxKeys: o.maxKeys, ContinuationToken: token,
      }));
      pages++;
      for (const c of r.Contents || []) keys.push({key: c.Key, size: c.Size});
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token && o.op === 'listAll');
    return {keys, pages};
  }
  if (o.op === 'delete') {
    await client.send(new DeleteObjectCommand({Bucket: bucket, Key: o.key}));
    return {};
  }
  throw new Error('unknown op ' + o.op);
}

async function main() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const cmd = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const client = new S3Client({
    endpoint: cmd.endpoint,
    region: cmd.region,
    forcePathStyle: cmd.forcePathStyle !== false,
    credentials: {accessKeyId: cmd.accessKeyId, secretAccessKey: cmd.secretAccessKey},
    maxAttempts: 1,
  });
  const out = [];
  for (const o of cmd.ops) {
    try {
      out.push(Object.assign({ok: true}, await run(client, cmd.bucket, o)));
    } catch (e) {
      out.push({ok: false, name: e.name || e.Code || String(e),
                status: e.$metadata ? e.$metadata.httpStatusCode : null,
                message: e.message});
    }
  }
  return out;
}

main().then((r) => {
  process.stdout.write(JSON.stringify(r) + '\n');
}, (e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
