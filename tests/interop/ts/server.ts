// The WS-Kit TypeScript server (the original, from npm) that tests/interop runs wskit against.
//
//   bun server.ts <port>
//
// Listens on 127.0.0.1:<port> (0 = any free port), path /ws. Writes one JSON object per line
// to stdout: {"event":"ready","port":N} once listening, then {"event":"error",...} for every
// error the router reports (validation failures, unknown or reserved types), so the tests can
// see what the original silently dropped. tests/interop/conftest.py builds an equivalent
// wskit router; keep the two in step.
import { createBunHandler } from "@ws-kit/bun";
import { createRouter, message, rpc, withZod, z } from "@ws-kit/zod";

const Note = message("NOTE", { text: z.string() });
const NoteAck = message("NOTE_ACK", { text: z.string() });
// wskit (pydantic) sends an optional field left out as null, hence nullish() rather than
// optional(); LABELED keeps the plain optional() to show that pitfall.
const Tagged = message("TAGGED", { text: z.string() }, { room: z.string().nullish() });
const TaggedAck = message("TAGGED_ACK", { text: z.string() }, { room: z.string().optional() });
const Labeled = message("LABELED", { text: z.string() }, { label: z.string().optional() });
const Ping = message("PING");
const Pong = message("PONG");
const Drop = message("DROP", { code: z.number().int() });
const Echo = rpc("ECHO", { text: z.string() }, "ECHO_REPLY", { text: z.string() });
const Count = rpc("COUNT", { n: z.number().int() }, "COUNT_DONE", { value: z.number().int() });
const Fail = rpc("FAIL", { code: z.string() }, "FAIL_REPLY", { ok: z.boolean() });

function emit(record: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(record) + "\n");
}

const router = createRouter()
  .plugin(withZod())
  .on(Note, (ctx) => {
    ctx.send(NoteAck, { text: ctx.payload.text });
  })
  .on(Tagged, (ctx) => {
    const room = ctx.meta.room;
    ctx.send(TaggedAck, { text: ctx.payload.text }, room == null ? {} : { meta: { room } });
  })
  .on(Labeled, (ctx) => {
    ctx.send(NoteAck, { text: ctx.payload.text });
  })
  .on(Ping, (ctx) => {
    ctx.send(Pong);
  })
  .on(Drop, (ctx) => {
    // The server ends the connection: what a client sees on a deploy or a crash.
    ctx.ws.close(ctx.payload.code, "dropped by request");
  })
  .rpc(Echo, (ctx) => {
    ctx.reply({ text: ctx.payload.text });
  })
  .rpc(Count, (ctx) => {
    for (let i = 0; i < ctx.payload.n; i++) ctx.progress({ value: i });
    ctx.reply({ value: ctx.payload.n });
  })
  .rpc(Fail, (ctx) => {
    ctx.error(ctx.payload.code, "boom", { attempt: 1 });
  });

router.onError((err, ctx) => {
  const e = err as { message?: unknown; code?: unknown };
  emit({
    event: "error",
    message: String(e?.message ?? err),
    code: typeof e?.code === "string" ? e.code : null,
    type: ctx && typeof (ctx as { type?: unknown }).type === "string" ? (ctx as { type: string }).type : null,
  });
});

const { fetch, websocket } = createBunHandler(router);

const port = Number(process.argv[2] ?? "0");
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, srv) {
    if (new URL(req.url).pathname === "/ws") return fetch(req, srv);
    return new Response("Not Found", { status: 404 });
  },
  websocket,
});

emit({ event: "ready", port: server.port });

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    server.stop(true);
    process.exit(0);
  });
}
