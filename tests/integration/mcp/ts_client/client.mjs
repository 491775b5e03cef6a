// The official MCP TypeScript SDK against todo-agent's /mcp (driven by test_mcp_typescript.py).
// usage: node client.mjs <server url> <bearer token> <task id>
// Prints one JSON line per step; waits on stdin for "go" after subscribing, so the test can make
// a REST write and see the notification arrive.
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema, ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token, taskId] = process.argv.slice(2);
const say = (step, value) => console.log(JSON.stringify({ step, value }));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const client = new Client({ name: "ts-test", version: "1.0.0" }, { capabilities: { elicitation: {} } });
const updated = new Promise((resolve) =>
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => resolve(n.params.uri)),
);
const asked = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params.message);
  return { action: "cancel" };
});
const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
say("protocol", transport.protocolVersion ?? null);
say("capabilities", client.getServerCapabilities());
say("instructions", client.getInstructions() ?? "");
say("resources", (await client.listResources()).resources.map((r) => r.uri));
const uri = `todo://tasks/${taskId}`;
say("read", JSON.parse((await client.readResource({ uri })).contents[0].text).title);
say("prompt", (await client.getPrompt({ name: "plan_my_day", arguments: {} })).messages[0].content.text);
const completion = await client.complete({
  ref: { type: "ref/resource", uri: "todo://tasks/{task_id}" },
  argument: { name: "task_id", value: taskId },
});
say("completion", completion.completion.values);
await client.subscribeResource({ uri });
say("subscribed", uri);
await lines.next(); // the test has written over REST
say("updated", await updated);
const deleted = await client.callTool({ name: "delete_task", arguments: { task_id: Number(taskId) } });
say("delete", { isError: deleted.isError ?? false, text: deleted.content[0].text, asked });
await client.close();

// A client that cannot be asked gets the refusal as an error result with the confirmation as
// data; the SDK checks a result's structuredContent against the tool's output schema even on an
// error, so the refusal must not carry any.
const plain = new Client({ name: "ts-plain", version: "1.0.0" }, { capabilities: {} });
await plain.connect(
  new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  }),
);
await plain.listTools(); // the SDK learns the output schemas it checks results against
const refused = await plain.callTool({ name: "delete_task", arguments: { task_id: Number(taskId) } });
say("refused", {
  isError: refused.isError ?? false,
  text: refused.content[0].text,
  blocks: refused.content.length,
  confirmation: refused._meta?.["todo-agent/confirmation"] ?? null,
});
await plain.close();
process.exit(0); // the stdin reader would keep the process alive
