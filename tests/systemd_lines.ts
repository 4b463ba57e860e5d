/** @module What every printed systemd unit must hold, shared by the unit tests and main.ts's. */

/** Lines a hardened `poe-proxy.service` always has. */
export const HARDENING = [
  "EnvironmentFile=/etc/poe-proxy/env",
  "ProtectSystem=strict",
  "NoNewPrivileges=yes",
  "Restart=on-failure",
  "After=network-online.target",
  "Wants=network-online.target",
  "ExecReload=/bin/kill -HUP $MAINPID",
  "PrivateTmp=yes",
  "PrivateDevices=yes",
  "LockPersonality=yes",
  "SystemCallFilter=@system-service",
  "SystemCallArchitectures=native",
  "RestrictNamespaces=yes",
  "UMask=0077",
  "WantedBy=multi-user.target",
];

/** The unit's lines that are not blank or comments. */
export function unitLines(text: string): string[] {
  return text.split("\n").filter((l) => l && !l.startsWith("#"));
}
