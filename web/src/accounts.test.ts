// The pure parts of the Add-account form: validation and what discovered settings mean.
import { describe, expect, it } from "vitest";
import { type Found, defaultPort, formErrors, foundNotes, settingsOf, validEmail } from "./accounts";

const gmail: Found = {
  source: "table",
  provider: "Gmail",
  kind: "imap",
  incoming: { host: "imap.gmail.com", port: 993, security: "tls" },
  smtp: { host: "smtp.gmail.com", port: 465, security: "tls" },
  username: "a@gmail.com",
  oauth: "google",
  appPassword: true,
  foreign: false,
};

describe("add-account form", () => {
  it("accepts addresses and refuses the rest", () => {
    expect(validEmail("a@example.org")).toBe(true);
    expect(validEmail(" a@mail.example.org ")).toBe(true);
    expect(validEmail("a@localhost")).toBe(false);
    expect(validEmail("a b@example.org")).toBe(false);
    expect(validEmail("@example.org")).toBe(false);
    expect(validEmail("a@@example.org")).toBe(false);
  });

  it("names each missing or wrong field", () => {
    const s = settingsOf(gmail);
    expect(formErrors("a@gmail.com", "pw", s)).toEqual({});
    const bad = { ...s, incoming: { ...s.incoming, host: "", port: 0 }, username: " " };
    expect(Object.keys(formErrors("nope", "", bad)).sort()).toEqual(["email", "incomingHost", "incomingPort", "password", "username"]);
    const badSmtp = { ...s, smtp: { host: "smtp bad", port: 70000, security: "tls" as const } };
    expect(Object.keys(formErrors("a@gmail.com", "pw", badSmtp)).sort()).toEqual(["smtpHost", "smtpPort"]);
  });

  it("copies discovered settings so editing them leaves the discovery alone", () => {
    const s = settingsOf(gmail);
    s.incoming.host = "other";
    expect(gmail.incoming.host).toBe("imap.gmail.com");
  });

  it("warns about guesses and other domains' servers", () => {
    expect(foundNotes(gmail).map((n) => n.warn)).toEqual([false, false]);
    expect(foundNotes(gmail)[1]?.text).toContain("app password");
    const guess = { ...gmail, source: "guess" as const, provider: null, appPassword: false };
    expect(foundNotes(guess)).toHaveLength(1);
    expect(foundNotes(guess)[0]?.warn).toBe(true);
    const foreign = { ...gmail, source: "autoconfig" as const, foreign: true, appPassword: false, incoming: { ...gmail.incoming, host: "imap.evil.example" } };
    const notes = foundNotes(foreign);
    expect(notes.some((n) => n.warn && n.text.includes("imap.evil.example"))).toBe(true);
  });

  it("switches ports with the security mode", () => {
    expect(defaultPort("imap", "starttls")).toBe(143);
    expect(defaultPort("smtp", "starttls")).toBe(587);
    expect(defaultPort("smtp", "tls")).toBe(465);
    expect(defaultPort("pop3", "tls")).toBe(995);
  });
});
