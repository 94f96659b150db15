//! docs/keys.md is generated from the key table, so the two cannot drift: a test compares them
//! (`UPDATE_DOCS=1 cargo test --lib tui::docs` rewrites the file).

use std::fmt::Write as _;

use super::cmdline::COMMANDS;
use super::keymap::{Context, Keymap};
use super::strings as s;

const INTRO: &str = "\
# Keys

`dialtone` (the terminal softphone) is driven by single keys; `?` shows them all on screen and `:`
opens a command line for everything else. Keys belong to the layer on top: a question (quit, delete
a message, remove a participant), the help overlay, a text field (dialer, command line, add
participant, caller id), the transfer prompt, the incoming-call prompt, the transfer-request
prompt, the voicemail panel or the device manager, the participants panel, the main screen. A layer
that does not use a key passes it down, so call keys (`h`, `m`, `p`, ...) also work from the
incoming-call and transfer-request prompts, the voicemail panel, the device manager and the
participants panel. A text field and the transfer prompt keep every key while they are open: a call
that rings while you type cannot be answered by a letter of what you type; press Esc to close the
field and answer. Ctrl-C closes a text field or the transfer prompt, and otherwise quits (asking
first when a call is live; a second Ctrl-C does not ask).

The transfer prompt (`t`) moves the focused call: `p` to a participant, `c` to another of your
calls (its other party joins that call), `v` to someone's voicemail; `f` chooses whether a target
that does not answer follows its forwarding (in the name field: Ctrl-f). The call's row shows
the transfer's progress and result. The other party sees the transfer-request prompt and accepts
or rejects; with `auto_accept_transfers = true` in the config they only see a notice.

Group calls: dial several people at once (`bob, carol` in the dialer, or `:call bob carol`), join
one by its id (`:join GUID`, or the id in the dialer), or add someone to the focused call (`+`, or
`:add carol`). Tab moves the focus from the calls to the participants panel, which lists each
participant with their state (Ringing, Connected, On hold, ...), `●` while they speak and
`muted`; a number shows as `+15550100 (alice)`, your own other devices as `(you, on laptop)`.
There `a` adds someone, Up/Down pick a participant and `x` removes them (after a yes). `H` ends a
group call for everyone (`:hangup all`); `h` leaves it. Calling or adding a number (`+15550100`)
shows one of your numbers to them: `caller_id` in the config, or the TUI asks.

The voicemail panel (`v`) lists your messages, newest first (`●` new); Enter plays one on the
speaker, `n` marks it new or heard, `x` deletes it (asking first), `f` sets call forwarding
(`:forward`), shown at the panel's foot. The status line counts new messages (`✉ 2 new`).

This file is generated from `src/tui/keymap.rs` (`UPDATE_DOCS=1 cargo test --lib tui::docs`).
";

const FIELDS: &str = "\
## Text fields (dialer, command line, the transfer prompt's name, add participant, caller id)

| keys | what it does |
| --- | --- |
| any character | types it |
| Enter | dial / run the command / transfer / add |
| Esc, Ctrl-C | cancel |
| Tab, Down / S-Tab, Up | next / previous completion (dialer: contacts, history, `echo`; command line: commands, names; transfer and add: people) |
| Left, Right, Home, End, Ctrl-A, Ctrl-E | move the cursor |
| Backspace, Del, Ctrl-U, Ctrl-K, Ctrl-W | delete a character, to the start, to the end, a word |

These are fixed; they cannot be rebound.
";

const CONFIG: &str = "\
## Changing keys

In the config file (`~/.config/dialtone/config.toml`, or `--config PATH`), the `[tui.keys]`
section gives a command new keys, one key or a list; an empty list unbinds it. The command's keys
are replaced in every layer where it has keys. A key you give takes that key away from any other
command of the same layer; two commands you rebind may not share a key in one layer.

```toml
[tui.keys]
hang_up = \"x\"            # x now hangs up (and no longer clears ended calls)
accept = [\"a\", \"y\"]
echo_test = []           # unbound; `:echo` still works
```

Key names: a character (`a`, `A`, `?`, `:`), `space`, `enter`, `esc`, `tab`, `shift-tab`,
`backspace`, `delete`, `insert`, `up`, `down`, `left`, `right`, `home`, `end`, `pageup`,
`pagedown`, `f1`..`f12`, each optionally prefixed with `ctrl-` and/or `alt-`. A bad name or an
unknown command stops `dialtone` with an error naming the key and the value.
";

/// The whole of docs/keys.md for a keymap (the default one in the repository).
pub fn keys_markdown(map: &Keymap) -> String {
    let mut out = String::from(INTRO);
    for ctx in Context::ALL {
        let _ = writeln!(out, "\n## {}\n", s::context_title(ctx));
        let _ = writeln!(
            out,
            "| keys | config name | what it does |\n| --- | --- | --- |"
        );
        for (cmd, keys) in map.entries(ctx) {
            let keys = keys
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {keys} | `{}` | {} |",
                cmd.name(),
                s::describe(ctx, cmd)
            );
        }
    }
    out.push('\n');
    out.push_str(FIELDS);
    let _ = writeln!(
        out,
        "\n## Command line (`:`)\n\n| command | also | what it does |\n| --- | --- | --- |"
    );
    for (names, arg) in COMMANDS {
        let usage = if arg.is_empty() {
            format!(":{}", names[0])
        } else {
            format!(":{} {arg}", names[0])
        };
        let also = names[1..]
            .iter()
            .map(|n| format!("`:{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| `{usage}` | {also} | {} |",
            s::describe_line(names[0])
        );
    }
    out.push_str(
        "\n`SPEC` is a device spec as for `--mic` and `--speaker`: `default`, a name from `dialtone devices`,\n\
         `file:PATH.wav`, `record:PATH.wav`, `tone:HZ`, `silence`. `REASON` is `busy` (486) or `forbidden`\n\
         (403); without it a rejection is a decline (603).\n\n\
         `GUID` is a group call's id (`29228d3e-040e-4656-a70e-890ab4e173e5`); everyone who joins the same\n\
         id is in the same call. `NAME` for `:add` may be a number; `:remove` takes a name, a number or a\n\
         raw id of someone in the focused call.\n\n\
         `TO` is a name (`:transfer carol`), `voicemail NAME` or `call N` (call N of the list), then\n\
         optionally `noforward` (a target that does not answer ends the attempt instead of following its\n\
         forwarding). `MODE` is `off`, `always NAME` or `unanswered NAME [SECS]` (default 20 s); `NAME` may\n\
         be `voicemail`.\n\n",
    );
    out.push_str(CONFIG);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_keys_md_matches_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/keys.md");
        let want = keys_markdown(&Keymap::default());
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/keys.md is out of date: run UPDATE_DOCS=1 cargo test --lib tui::docs"
        );
    }

    #[test]
    fn every_command_appears() {
        let md = keys_markdown(&Keymap::default());
        for cmd in super::super::keymap::Cmd::ALL {
            assert!(md.contains(&format!("`{}`", cmd.name())), "{cmd:?}");
        }
    }
}
