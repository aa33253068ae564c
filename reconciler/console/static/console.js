// agent-reconciler console. Every page works without this file; with it, chat replies stream in
// token by token and tables marked data-refresh are brought up to date while the page is open.
"use strict";

function parseEvents(buffer, onEvent) {
  // Server-sent events: blocks separated by a blank line, with "event:" and "data:" lines.
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }
  return buffer;
}

function messageItem(role, text) {
  const item = document.createElement("li");
  item.className = "message " + role;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role;
  const content = document.createElement("div");
  content.className = "content";
  content.textContent = text;
  item.append(label, content);
  return item;
}

async function streamChat(form, event) {
  event.preventDefault();
  const input = form.querySelector("textarea[name=message]");
  const send = form.querySelector("button[type=submit]");
  const session = form.querySelector("input[name=session_id]");
  const csrf = form.querySelector("input[name=csrf]").value;
  const text = input.value.trim();
  if (!text) { input.focus(); return; }
  const list = document.getElementById("messages");
  for (const old of list.querySelectorAll("[data-testid=chat-reply]")) old.removeAttribute("data-testid");
  list.append(messageItem("user", text));
  const reply = messageItem("assistant", "");
  const content = reply.querySelector(".content");
  content.setAttribute("data-testid", "chat-reply");
  reply.setAttribute("aria-busy", "true");
  list.append(reply);
  input.value = "";
  send.disabled = true;
  const fail = (message) => {
    reply.className = "message error";
    reply.querySelector(".role").textContent = "error";
    content.textContent = (content.textContent ? content.textContent + "\n" : "") + message;
  };
  try {
    const answer = await fetch(form.dataset.stream, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf},
      body: new URLSearchParams({message: text, session_id: session.value}),
    });
    if (!answer.ok || !answer.body) {
      let message = "the server answered " + answer.status;
      try { message = (await answer.json()).error.message; } catch (_) { /* not JSON */ }
      fail(message);
      return;
    }
    const reader = answer.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), (name, data) => {
        if (name === "session") {
          session.value = data.session_id;
          const url = new URL(window.location.href);
          url.searchParams.set("session", data.session_id);
          window.history.replaceState(null, "", url);
          const note = document.getElementById("session-note");
          if (note) {
            const link = document.createElement("a");
            link.href = form.dataset.sessions + "/" + data.session_id;
            link.textContent = data.session_id.slice(0, 8);
            note.replaceChildren("session ", link);
          }
        } else if (name === "delta") {
          content.textContent += data.content;
        } else if (name === "done") {
          const meta = document.createElement("span");
          meta.className = "meta";
          const tokens = data.usage && data.usage.total_tokens != null ? " · " + data.usage.total_tokens + " tokens" : "";
          meta.textContent = (data.model || "") + tokens + (data.finish_reason ? " · " + data.finish_reason : "");
          reply.append(meta);
        } else if (name === "error") {
          fail(data.error.message);
        }
      });
    }
  } catch (error) {
    fail("the reply could not be read: " + error.message);
  } finally {
    reply.removeAttribute("aria-busy");
    send.disabled = false;
    input.focus();
  }
}

function refreshEvery(element) {
  const seconds = Number(element.dataset.refresh);
  if (!element.id || !(seconds > 0)) return;
  window.setInterval(async () => {
    if (document.visibilityState !== "visible" || element.contains(document.activeElement)) return;
    try {
      const answer = await fetch(window.location.href, {credentials: "same-origin"});
      if (!answer.ok || answer.redirected) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById(element.id);
      if (fresh) element.replaceChildren(...fresh.childNodes);
    } catch (_) { /* offline for a moment: try again next time */ }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-stream]")) {
    form.addEventListener("submit", (event) => streamChat(form, event));
    const input = form.querySelector("textarea[name=message]");
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }
  for (const element of document.querySelectorAll("[data-refresh]")) refreshEvery(element);
});
