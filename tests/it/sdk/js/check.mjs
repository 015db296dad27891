// Drives chatgate's OpenAI-compatible route with the official `openai` npm
// package (create, stream, tools) and the Vercel AI SDK (`generateText` and
// `streamText` with a tool whose result goes back for a second step).
// Prints what it saw as JSON; exits non-zero with a message on any mismatch.
// Usage: node check.mjs <base_url ending in /api/v1> <key> <model>
import OpenAI from "openai";
import { generateText, streamText, tool, jsonSchema, stepCountIs } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";

const [baseURL, apiKey, model] = process.argv.slice(2);
const seen = {};
function check(cond, what) {
  if (!cond) {
    console.error(`MISMATCH: ${what}`);
    process.exit(1);
  }
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
// 1. create
const c = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hello JS" }] });
check(c.id.startsWith("chatcmpl-"), `id ${c.id}`);
check(c.choices[0].finish_reason === "stop", `finish_reason ${c.choices[0].finish_reason}`);
seen.create = c.choices[0].message.content;
// 2. stream
const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: "user", content: "stream" }] });
let text = "";
let last = null;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  last = chunk.choices[0]?.finish_reason ?? last;
}
check(last === "stop", `stream finish_reason ${last}`);
seen.stream = text;
// 3. tools
const weatherFn = {
  type: "function",
  function: { name: "weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};
const t = await client.chat.completions.create({ model, tools: [weatherFn], messages: [{ role: "user", content: "Weather?" }] });
check(t.choices[0].finish_reason === "tool_calls", `tools finish_reason ${t.choices[0].finish_reason}`);
const call = t.choices[0].message.tool_calls[0];
seen.tool_call = { id: call.id, name: call.function.name, arguments: JSON.parse(call.function.arguments) };

// The Vercel AI SDK over the OpenAI-compatible provider.
const provider = createOpenAICompatible({ name: "chatgate", baseURL, apiKey });
const calls = [];
const weather = tool({
  description: "Weather in a city",
  inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
  execute: async ({ city }) => {
    calls.push(city);
    return { city, sky: "sunny" };
  },
});
const g = await generateText({ model: provider(model), prompt: "Weather in Lisbon?", tools: { weather }, stopWhen: stepCountIs(3), maxRetries: 0 });
check(g.steps.length === 2, `generateText steps ${g.steps.length}`);
seen.generate = { text: g.text, calls: [...calls] };
const s = streamText({ model: provider(model), prompt: "Weather in Porto?", tools: { weather }, stopWhen: stepCountIs(3), maxRetries: 0,
  onError: ({ error }) => { console.error(`streamText error: ${error}`); process.exit(1); } });
let streamed = "";
for await (const piece of s.textStream) streamed += piece;
check((await s.steps).length === 2, `streamText steps ${(await s.steps).length}`);
seen.stream_text = { text: streamed, calls: [...calls] };
console.log(JSON.stringify(seen));
