/**
 * Which received messages deserve a desktop notification, and what it says.
 * By default a notification names the conversation and counts the new
 * messages, never their text: the text appears only when the user turned on
 * "Show message text in notifications" on the options page. Pure functions.
 */
import type { EngineState } from "../../app/src/engine.js";

import { conversationTitle } from "./view.js";

/** New messages in one conversation since the last look. */
export interface NewMessages {
  /** The conversation's key (peer name or `#` + hex group id). */
  key: string;
  title: string;
  group: boolean;
  /** Author and text (or file name) of each new message, oldest first. */
  messages: { from: string; text: string }[];
  /** The conversation's unread count now. */
  unread: number;
}

/** Notification ids are `conversation:<key>`: one notification per conversation, replaced as more arrive. */
export function notificationId(key: string): string {
  return `conversation:${key}`;
}

/** The conversation key of a notification id, or undefined for another id. */
export function conversationOfNotification(id: string): string | undefined {
  return id.startsWith("conversation:") ? id.slice("conversation:".length) : undefined;
}

/** Every message id in `state` (what is already there when the extension starts is not news). */
export function allMessageIds(state: EngineState): Set<string> {
  const ids = new Set<string>();
  for (const conv of Object.values(state.conversations)) for (const m of conv.messages) ids.add(m.id);
  return ids;
}

/**
 * The received, still unread messages of `state` whose ids are not in
 * `seen`, by conversation; adds every id of `state` to `seen`.
 */
export function takeNewMessages(state: EngineState, seen: Set<string>): NewMessages[] {
  const out: NewMessages[] = [];
  for (const conv of Object.values(state.conversations)) {
    const fresh = conv.messages.filter((m) => !seen.has(m.id));
    for (const m of fresh) seen.add(m.id);
    if (conv.unread === 0) continue;
    const incoming = fresh.filter((m) => !m.mine && !m.event && !m.deleted);
    if (incoming.length === 0) continue;
    out.push({
      key: conv.peer,
      title: conversationTitle(conv),
      group: conv.group !== undefined,
      messages: incoming.map((m) => ({ from: m.from, text: m.file ? `File: ${m.file.name}` : m.text })),
      unread: conv.unread,
    });
  }
  return out;
}

/** What `chrome.notifications.create` is given: the title, the body, and nothing else that could carry content. */
export interface NotificationText {
  title: string;
  message: string;
}

/** The notification for `news`: a count unless `showText`, else the latest message's text (with its author in a group). */
export function notificationText(news: NewMessages, showText: boolean): NotificationText {
  const title = news.group ? `${news.title} (group)` : news.title;
  if (!showText) return { title, message: news.unread === 1 ? "1 new message" : `${news.unread} new messages` };
  const last = news.messages.at(-1)!;
  return { title, message: news.group ? `${last.from}: ${last.text}` : last.text };
}
