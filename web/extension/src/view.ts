/**
 * The engine's state as the popup's `View` (plain JSON: no bytes, no
 * protobuf messages) and the numbers the toolbar shows. Pure functions.
 */
import type { ChatMessage, Conversation, EngineState } from "../../app/src/engine.js";

import type { ConversationView, MessageView, View } from "./protocol.js";

/** How many of a conversation's latest messages the popup receives. */
export const MESSAGES_PER_CONVERSATION = 50;

/** The name the popup and notifications give conversation `conv`. */
export function conversationTitle(conv: Conversation): string {
  return conv.group ? conv.group.name : conv.peer;
}

function messageView(m: ChatMessage): MessageView {
  return {
    id: m.id,
    from: m.from,
    mine: m.mine,
    text: m.deleted ? "" : m.text,
    sentAtMs: m.sentAtMs,
    status: m.status,
    edited: m.edited,
    deleted: m.deleted,
    event: m.event ?? false,
    fileName: m.file?.name,
  };
}

/** The popup's view of `state`: conversations with the latest first. */
export function engineView(state: EngineState, server: string): View {
  const conversations: ConversationView[] = Object.values(state.conversations).map((conv) => ({
    key: conv.peer,
    title: conversationTitle(conv),
    group: conv.group !== undefined,
    canWrite: conv.group?.active ?? true,
    unread: conv.unread,
    lastAtMs: conv.messages.at(-1)?.sentAtMs ?? 0,
    messages: conv.messages.slice(-MESSAGES_PER_CONVERSATION).map(messageView),
  }));
  conversations.sort((a, b) => b.lastAtMs - a.lastAtMs || a.title.localeCompare(b.title));
  return { signedIn: true, server, username: state.username, net: state.net, netProblem: state.netProblem, pending: state.pending, conversations };
}

/** Unread messages over all conversations. */
export function totalUnread(state: EngineState): number {
  return Object.values(state.conversations).reduce((sum, conv) => sum + conv.unread, 0);
}

/** The toolbar badge for `unread` messages: empty at zero, "99+" past 99. */
export function badgeText(unread: number): string {
  if (unread <= 0) return "";
  return unread > 99 ? "99+" : String(unread);
}
