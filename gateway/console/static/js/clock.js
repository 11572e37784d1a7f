// The gateway's clock as the console shows it. Countdowns to a response window, "since" times
// and the header clock follow the gateway, not this PC: a control-room PC's clock may be minutes
// off, and a countdown that is minutes wrong sends people too late (or cries wolf).
//
// Every API answer carries X-Gateway-Time (ms since the epoch, the gateway's clock); the offset
// is taken from the latest answer that came back quickly (its round trip bounds the error).

let offset = 0;

/** Round trips above this say too little about when the gateway read its clock. */
const USABLE_RTT = 2000;

/** Milliseconds since the epoch on the gateway's clock, as best known. */
export function now() { return Date.now() + offset; }

/** How far this PC's clock is behind the gateway's (ms; negative: ahead). */
export function skewMs() { return offset; }

/** Take the gateway's time from an answer sent at `sentAt` and read at `receivedAt` (PC ms). */
export function observe(header, sentAt, receivedAt) {
  const gateway = Number(header);
  if (!header || !Number.isFinite(gateway) || receivedAt - sentAt > USABLE_RTT) return;
  offset = gateway - (sentAt + receivedAt) / 2;
}
