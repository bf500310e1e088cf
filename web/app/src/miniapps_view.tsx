/**
 * Miniapps on screen: the "Apps" menu of a group chat, an instance inline
 * in the chat (a sandboxed frame driven by `MiniappHost`), and the dialog
 * that asks the user before any event of an app is sent.
 */
import { MiniappHost, miniappDocument } from "@microbot/miniapp/host";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import type { Engine } from "./engine.js";
import { MINIAPPS, type MiniappInstance } from "./miniapps.js";
import { ErrorLine, useAction } from "./ui.js";

/** The "Apps" button of a group chat: starts a poll or a checklist. */
export function AppsMenu({ engine, peer }: { engine: Engine; peer: string }) {
  const [open, setOpen] = useState(false);
  const [, error, run] = useAction();
  return (
    <div class="apps-menu">
      <button class="link" aria-expanded={open} onClick={() => setOpen(!open)}>
        Apps
      </button>
      {open ? (
        <ul class="apps" aria-label="Apps">
          {Object.entries(MINIAPPS).map(([appId, app]) => (
            <li key={appId}>
              <button
                class="secondary"
                onClick={() =>
                  void run(async () => {
                    engine.startMiniapp(peer, appId);
                    setOpen(false);
                  })
                }
              >
                Start a {app.name.toLowerCase()}
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <ErrorLine error={error} />
    </div>
  );
}

/** One instance inline in the chat: the app in a frame without network access, or a placeholder for an app this client does not have. */
export function MiniappCard({ engine, peer, miniapp, members }: { engine: Engine; peer: string; miniapp: MiniappInstance; members: string[] }) {
  const frame = useRef<HTMLIFrameElement>(null);
  const app = MINIAPPS[miniapp.appId];
  const name = app?.name ?? miniapp.appId;
  const srcdoc = useMemo(
    () =>
      miniappDocument({
        scriptUrl: `${location.origin}/miniapps/${miniapp.appId}.js`,
        styleUrl: `${location.origin}/miniapps/miniapp.css`,
        title: name,
        hostOrigin: location.origin,
      }),
    [miniapp.appId, name],
  );
  // The latest members without restarting the frame.
  const membersRef = useRef(members);
  membersRef.current = members;
  useEffect(() => {
    const target = frame.current?.contentWindow;
    if (!app || !target) return;
    const host = new MiniappHost({
      target,
      window,
      self: engine.state.username,
      members: () => membersRef.current.map((m) => ({ username: m, displayName: m, self: m === engine.state.username })),
      updates: () => engine.miniapp(peer, miniapp.instance)?.updates ?? [],
      confirm: (request) => engine.miniappPrompts.ask(name, request),
      send: (payload) => engine.sendMiniapp(peer, miniapp.instance, payload),
      onError: (e) => console.warn(`miniapp ${name}:`, e.message),
    });
    const stop = engine.miniappListeners.listen(miniapp.instance, (update) => host.deliver(update));
    return () => {
      stop();
      host.close();
    };
  }, [engine, peer, miniapp.instance, app, name]);
  if (!app) return <p class="text">An app this version cannot show ({miniapp.appId}).</p>;
  return (
    <div class="miniapp">
      <iframe ref={frame} title={`${name} by ${miniapp.startedBy}`} sandbox="allow-scripts" srcDoc={srcdoc} />
    </div>
  );
}

/** Asks the user, one question at a time, whether an app may send what it proposes. */
export function MiniappPrompt({ engine }: { engine: Engine }) {
  const [prompt, setPrompt] = useState(engine.miniappPrompts.current);
  useEffect(() => engine.miniappPrompts.subscribe(() => setPrompt(engine.miniappPrompts.current)), [engine]);
  if (!prompt) return null;
  return (
    <div class="miniapp-prompt" role="dialog" aria-label="Send to the group?">
      <p>
        <strong>{prompt.app}</strong> wants to send to everyone in this group: {prompt.summary}
      </p>
      <pre class="hint">{JSON.stringify(prompt.update)}</pre>
      <div class="buttons">
        <button onClick={() => prompt.answer(true)}>Send</button>
        <button class="secondary" onClick={() => prompt.answer(false)}>
          Don't send
        </button>
      </div>
    </div>
  );
}
