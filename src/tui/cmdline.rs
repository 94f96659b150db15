//! The `:` command line: parsing what was typed into a [`LineCmd`], and Tab completion. Pure.

use crate::core::{ECHO_NAME, RejectReason, parse_group_id};
use crate::protocol::{ForwardMode, Forwarding};

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum LineCmd {
    /// Several callees make a group call.
    Call(Vec<String>),
    /// Start or join the group call with this id (a GUID, lower case).
    Join(String),
    /// Ring someone (a name or a number) into the focused call.
    Add(String),
    /// Remove someone from the focused call.
    Remove(String),
    Accept,
    Reject(RejectReason),
    /// `:hangup all` ends a group call for everyone.
    HangUp {
        everyone: bool,
    },
    Mute,
    Unmute,
    Hold,
    Resume,
    Echo,
    Devices,
    Microphone(String),
    Speaker(String),
    Camera(String),
    /// Focus the n-th call of the list (1-based, as shown).
    Focus(usize),
    Dismiss,
    /// `:transfer` alone opens the prompt; with a target it transfers the focused call at once.
    Transfer(Option<LineTransfer>),
    Voicemail,
    /// `:forward` alone shows the setting; with arguments it changes it.
    Forward(Option<Forwarding>),
    Help,
    Quit {
        force: bool,
    },
}

/// Where `:transfer` sends the focused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTransfer {
    pub to: LineTarget,
    /// `noforward`: end the attempt instead of following the target's forwarding.
    pub disable_forwarding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineTarget {
    Participant(String),
    Voicemail(String),
    /// Call n of the list (1-based, as shown).
    Call(usize),
}

/// The word after `:transfer ... ` that disables forwarding.
pub const NO_FORWARD: &str = "noforward";

/// Every command name with its argument hint, in the order of the help overlay and docs/keys.md.
/// The first name is the one completion offers; the others are accepted aliases.
pub const COMMANDS: &[(&[&str], &str)] = &[
    (&["call", "dial"], "NAME…"),
    (&["join"], "GUID"),
    (&["add", "invite"], "NAME"),
    (&["remove", "kick"], "NAME"),
    (&["accept", "answer"], ""),
    (&["reject", "decline"], "[REASON]"),
    (&["hangup", "hang-up", "end"], "[all]"),
    (&["mute"], ""),
    (&["unmute"], ""),
    (&["hold"], ""),
    (&["resume", "unhold"], ""),
    (&["echo"], ""),
    (&["devices"], ""),
    (&["mic", "microphone"], "SPEC"),
    (&["speaker"], "SPEC"),
    (&["camera"], "SPEC"),
    (&["focus"], "N"),
    (&["dismiss"], ""),
    (&["transfer", "xfer"], "[TO]"),
    (&["voicemail", "vm"], ""),
    (&["forward"], "[MODE]"),
    (&["help"], ""),
    (&["quit", "q"], ""),
    (&["quit!", "q!"], ""),
];

pub fn parse(line: &str) -> Result<LineCmd, String> {
    let line = line.trim().trim_start_matches(':').trim();
    let (name, rest) = match line.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (line, ""),
    };
    let args: Vec<String> = rest
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let no_args = |cmd: LineCmd| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(format!(":{name} takes no argument, got {rest:?}"))
        }
    };
    let one_arg = |make: fn(String) -> LineCmd| {
        if rest.is_empty() {
            Err(format!(":{name} needs a device, e.g. :{name} default"))
        } else {
            Ok(make(rest.to_string()))
        }
    };
    match name {
        "" => Err("type a command, e.g. :call bob (:help lists them)".to_string()),
        "call" | "dial" | "c" => {
            if args.is_empty() {
                Err(format!(":{name} needs someone to call, e.g. :{name} bob"))
            } else {
                Ok(LineCmd::Call(args))
            }
        }
        "join" => match args.as_slice() {
            [id] => parse_group_id(id).map(LineCmd::Join),
            _ => Err(format!(
                ":{name} takes a group call's id, e.g. :{name} 29228d3e-040e-4656-a70e-890ab4e173e5"
            )),
        },
        "add" | "invite" => match args.as_slice() {
            [who] => Ok(LineCmd::Add(who.clone())),
            _ => Err(format!(
                ":{name} takes one name or number, e.g. :{name} carol"
            )),
        },
        "remove" | "kick" => match args.as_slice() {
            [who] => Ok(LineCmd::Remove(who.clone())),
            _ => Err(format!(":{name} takes one participant, e.g. :{name} carol")),
        },
        "accept" | "answer" => no_args(LineCmd::Accept),
        "reject" | "decline" => match args.as_slice() {
            [] => Ok(LineCmd::Reject(RejectReason::None)),
            [reason] => reason.parse().map(LineCmd::Reject),
            _ => Err(format!(
                ":{name} takes one reason (busy or forbidden), got {rest:?}"
            )),
        },
        "hangup" | "hang-up" | "end" => match args.as_slice() {
            [] => Ok(LineCmd::HangUp { everyone: false }),
            [all] if all == "all" || all == "everyone" => Ok(LineCmd::HangUp { everyone: true }),
            _ => Err(format!(
                ":{name} takes nothing, or `all` to end a group call for everyone; got {rest:?}"
            )),
        },
        "mute" => no_args(LineCmd::Mute),
        "unmute" => no_args(LineCmd::Unmute),
        "hold" => no_args(LineCmd::Hold),
        "resume" | "unhold" => no_args(LineCmd::Resume),
        "echo" => no_args(LineCmd::Echo),
        "devices" => no_args(LineCmd::Devices),
        "mic" | "microphone" => one_arg(LineCmd::Microphone),
        "speaker" => one_arg(LineCmd::Speaker),
        "camera" => one_arg(LineCmd::Camera),
        "focus" => match args.as_slice() {
            [n] => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(LineCmd::Focus(n)),
                _ => Err(format!(
                    ":focus takes a call number from the list (1, 2, ...), got {n:?}"
                )),
            },
            _ => Err(":focus takes a call number from the list, e.g. :focus 2".to_string()),
        },
        "dismiss" => no_args(LineCmd::Dismiss),
        "transfer" | "xfer" => parse_transfer(name, &args).map(LineCmd::Transfer),
        "voicemail" | "vm" => no_args(LineCmd::Voicemail),
        "forward" => parse_forward(&args).map(LineCmd::Forward),
        "help" | "h" | "?" => no_args(LineCmd::Help),
        "quit" | "q" | "exit" => no_args(LineCmd::Quit { force: false }),
        "quit!" | "q!" => no_args(LineCmd::Quit { force: true }),
        other => Err(format!("unknown command {other:?} (:help lists them)")),
    }
}

fn parse_transfer(name: &str, args: &[String]) -> Result<Option<LineTransfer>, String> {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let disable_forwarding = args.last() == Some(&NO_FORWARD);
    if disable_forwarding {
        args.pop();
    }
    let usage = || {
        format!(
            ":{name} takes a name, `voicemail NAME` or `call N` (and `{NO_FORWARD}`), e.g. :{name} carol"
        )
    };
    let to = match args.as_slice() {
        [] if disable_forwarding => return Err(usage()),
        [] => return Ok(None),
        ["voicemail" | "vm", who] => LineTarget::Voicemail(who.to_string()),
        ["call", n] => match n.parse::<usize>() {
            Ok(n) if n >= 1 => LineTarget::Call(n),
            _ => {
                return Err(format!(
                    ":{name} call takes a call number from the list (1, 2, ...), got {n:?}"
                ));
            }
        },
        [who] if *who != "voicemail" && *who != "call" => LineTarget::Participant(who.to_string()),
        _ => return Err(usage()),
    };
    Ok(Some(LineTransfer {
        to,
        disable_forwarding,
    }))
}

fn parse_forward(args: &[String]) -> Result<Option<Forwarding>, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let usage = "type :forward off, :forward always NAME, or :forward unanswered NAME [SECS] \
                 (NAME may be voicemail)";
    let (mode, target, secs) = match args.as_slice() {
        [] => return Ok(None),
        ["off"] => (ForwardMode::Off, None, None),
        ["always", t] => (ForwardMode::Always, Some(*t), None),
        ["unanswered", t] => (ForwardMode::Unanswered, Some(*t), None),
        ["unanswered", t, s] => (ForwardMode::Unanswered, Some(*t), Some(*s)),
        _ => return Err(usage.to_string()),
    };
    let unanswered_after_secs = match secs {
        None => Forwarding::default().unanswered_after_secs,
        Some(s) => match s.parse::<u32>() {
            Ok(n @ 1..=300) => n,
            _ => {
                return Err(format!(
                    ":forward unanswered takes seconds from 1 to 300, got {s:?}"
                ));
            }
        },
    };
    Ok(Some(Forwarding {
        mode,
        target: target.map(str::to_string),
        unanswered_after_secs,
    }))
}

/// Completes the word under the cursor (at the end of the line): a command name for the first
/// word, a name for `:call`. Returns the candidates, best first; the caller picks and cycles.
pub fn complete(line: &str, names: &[String]) -> Vec<String> {
    let trimmed = line.trim_start();
    match trimmed.split_once(char::is_whitespace) {
        None => COMMANDS
            .iter()
            .map(|(names, _)| names[0])
            .filter(|n| n.starts_with(trimmed))
            .map(|n| format!("{n} "))
            .collect(),
        Some((cmd, rest)) if matches!(cmd, "add" | "invite" | "remove" | "kick") => {
            super::app::matching_names(names, rest.trim_start())
                .into_iter()
                .map(|n| format!("{cmd} {n}"))
                .collect()
        }
        Some((cmd, rest)) if matches!(cmd, "hangup" | "hang-up" | "end") => ["all"]
            .iter()
            .filter(|r| r.starts_with(rest.trim()))
            .map(|r| format!("{cmd} {r}"))
            .collect(),
        Some((cmd, rest)) if matches!(cmd, "call" | "dial" | "c") => {
            let word_start = rest.rfind([' ', ',']).map(|i| i + 1).unwrap_or(0);
            let (before, word) = rest.split_at(word_start);
            super::app::matching_names(names, word)
                .into_iter()
                .map(|n| format!("{cmd} {before}{n}"))
                .collect()
        }
        Some((cmd, rest)) if matches!(cmd, "reject" | "decline") => ["busy", "forbidden"]
            .iter()
            .filter(|r| r.starts_with(rest.trim()))
            .map(|r| format!("{cmd} {r}"))
            .collect(),
        Some((cmd, rest)) if matches!(cmd, "transfer" | "xfer" | "forward") => {
            complete_words(cmd, rest, names)
        }
        Some(_) => Vec::new(),
    }
}

/// `:transfer` and `:forward`: the keywords where they fit, else people (not the echo service).
fn complete_words(cmd: &str, rest: &str, names: &[String]) -> Vec<String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (done, word) = if rest.ends_with(char::is_whitespace) || words.is_empty() {
        (&words[..], "")
    } else {
        (&words[..words.len() - 1], words[words.len() - 1])
    };
    let people = || {
        names
            .iter()
            .filter(|n| n.as_str() != ECHO_NAME)
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut cands: Vec<String> = match (cmd, done) {
        ("forward", []) => vec!["off".into(), "always".into(), "unanswered".into()],
        ("forward", [m]) if *m == "always" || *m == "unanswered" => {
            let mut v = vec!["voicemail".to_string()];
            v.extend(people());
            v
        }
        ("forward", _) => Vec::new(),
        (_, []) => {
            let mut v = people();
            v.extend(["voicemail".to_string(), "call".to_string()]);
            v
        }
        (_, ["voicemail" | "vm"]) => people(),
        (_, [_]) => vec![NO_FORWARD.to_string()],
        _ => Vec::new(),
    };
    cands = super::app::matching_names(&cands, word);
    let prefix: String = done.iter().map(|w| format!("{w} ")).collect();
    cands
        .into_iter()
        .map(|c| format!("{cmd} {prefix}{c}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, Result<LineCmd, &str>)] = &[
            ("call bob", Ok(LineCmd::Call(s(&["bob"])))),
            (":call bob", Ok(LineCmd::Call(s(&["bob"])))),
            (
                "  dial  bob, carol ",
                Ok(LineCmd::Call(s(&["bob", "carol"]))),
            ),
            ("c +15551234567", Ok(LineCmd::Call(s(&["+15551234567"])))),
            ("call", Err("needs someone")),
            (
                "join {29228D3E-040E-4656-A70E-890AB4E173E5}",
                Ok(LineCmd::Join("29228d3e-040e-4656-a70e-890ab4e173e5".into())),
            ),
            ("join", Err("group call's id")),
            ("join bob", Err("not a GUID")),
            ("add carol", Ok(LineCmd::Add("carol".into()))),
            ("invite +15550101", Ok(LineCmd::Add("+15550101".into()))),
            ("add", Err("one name or number")),
            ("add bob carol", Err("one name or number")),
            ("remove carol", Ok(LineCmd::Remove("carol".into()))),
            ("kick", Err("one participant")),
            ("accept", Ok(LineCmd::Accept)),
            ("answer", Ok(LineCmd::Accept)),
            ("accept now", Err("takes no argument")),
            ("reject", Ok(LineCmd::Reject(RejectReason::None))),
            ("reject busy", Ok(LineCmd::Reject(RejectReason::Busy))),
            (
                "decline forbidden",
                Ok(LineCmd::Reject(RejectReason::Forbidden)),
            ),
            ("reject later", Err("unknown reject reason \"later\"")),
            ("hangup", Ok(LineCmd::HangUp { everyone: false })),
            ("hang-up", Ok(LineCmd::HangUp { everyone: false })),
            ("end", Ok(LineCmd::HangUp { everyone: false })),
            ("hangup all", Ok(LineCmd::HangUp { everyone: true })),
            ("end everyone", Ok(LineCmd::HangUp { everyone: true })),
            ("hangup bob", Err("`all`")),
            ("mute", Ok(LineCmd::Mute)),
            ("unmute", Ok(LineCmd::Unmute)),
            ("hold", Ok(LineCmd::Hold)),
            ("resume", Ok(LineCmd::Resume)),
            ("echo", Ok(LineCmd::Echo)),
            ("devices", Ok(LineCmd::Devices)),
            ("mic tone:440", Ok(LineCmd::Microphone("tone:440".into()))),
            (
                "microphone Built-in Audio Analog Stereo",
                Ok(LineCmd::Microphone("Built-in Audio Analog Stereo".into())),
            ),
            (
                "speaker record:/tmp/a b.wav",
                Ok(LineCmd::Speaker("record:/tmp/a b.wav".into())),
            ),
            ("speaker", Err("needs a device")),
            (
                "camera /dev/video0",
                Ok(LineCmd::Camera("/dev/video0".into())),
            ),
            ("focus 2", Ok(LineCmd::Focus(2))),
            ("focus 0", Err("call number")),
            ("focus", Err("call number")),
            ("dismiss", Ok(LineCmd::Dismiss)),
            ("transfer", Ok(LineCmd::Transfer(None))),
            (
                "transfer carol",
                Ok(LineCmd::Transfer(Some(LineTransfer {
                    to: LineTarget::Participant("carol".into()),
                    disable_forwarding: false,
                }))),
            ),
            (
                "xfer carol noforward",
                Ok(LineCmd::Transfer(Some(LineTransfer {
                    to: LineTarget::Participant("carol".into()),
                    disable_forwarding: true,
                }))),
            ),
            (
                "transfer voicemail carol",
                Ok(LineCmd::Transfer(Some(LineTransfer {
                    to: LineTarget::Voicemail("carol".into()),
                    disable_forwarding: false,
                }))),
            ),
            (
                "transfer call 2",
                Ok(LineCmd::Transfer(Some(LineTransfer {
                    to: LineTarget::Call(2),
                    disable_forwarding: false,
                }))),
            ),
            ("transfer call x", Err("call number")),
            ("transfer call", Err("takes a name")),
            ("transfer noforward", Err("takes a name")),
            ("transfer bob carol", Err("takes a name")),
            ("voicemail", Ok(LineCmd::Voicemail)),
            ("vm", Ok(LineCmd::Voicemail)),
            ("forward", Ok(LineCmd::Forward(None))),
            (
                "forward off",
                Ok(LineCmd::Forward(Some(Forwarding {
                    mode: ForwardMode::Off,
                    target: None,
                    unanswered_after_secs: 20,
                }))),
            ),
            (
                "forward always bob",
                Ok(LineCmd::Forward(Some(Forwarding {
                    mode: ForwardMode::Always,
                    target: Some("bob".into()),
                    unanswered_after_secs: 20,
                }))),
            ),
            (
                "forward unanswered voicemail 30",
                Ok(LineCmd::Forward(Some(Forwarding {
                    mode: ForwardMode::Unanswered,
                    target: Some("voicemail".into()),
                    unanswered_after_secs: 30,
                }))),
            ),
            ("forward unanswered voicemail 0", Err("1 to 300")),
            ("forward always", Err("type :forward off")),
            ("forward sometimes bob", Err("type :forward off")),
            ("help", Ok(LineCmd::Help)),
            ("quit", Ok(LineCmd::Quit { force: false })),
            ("q", Ok(LineCmd::Quit { force: false })),
            ("q!", Ok(LineCmd::Quit { force: true })),
            ("quit!", Ok(LineCmd::Quit { force: true })),
            ("", Err("type a command")),
            ("frobnicate", Err("unknown command \"frobnicate\"")),
        ];
        for (line, want) in cases {
            match (parse(line), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{line:?}"),
                (Err(got), Err(want)) => {
                    assert!(got.contains(want), "{line:?}: {got:?} lacks {want:?}")
                }
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_listed_command_parses() {
        for (names, arg) in COMMANDS {
            for name in *names {
                let line = match *arg {
                    "" => name.to_string(),
                    "[REASON]" => format!("{name} busy"),
                    "N" => format!("{name} 1"),
                    "[TO]" => format!("{name} carol {NO_FORWARD}"),
                    "[MODE]" => format!("{name} unanswered voicemail 20"),
                    "[all]" => format!("{name} all"),
                    "GUID" => format!("{name} 29228d3e-040e-4656-a70e-890ab4e173e5"),
                    _ => format!("{name} x"),
                };
                assert!(parse(&line).is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn completes_commands_and_names() {
        let names = vec!["bob".to_string(), "bobby".to_string(), "carol".to_string()];
        assert_eq!(complete("ca", &names), vec!["call ", "camera "]);
        assert_eq!(complete("mu", &names), vec!["mute "]);
        assert_eq!(complete("call b", &names), vec!["call bob", "call bobby"]);
        assert_eq!(complete("call bob, c", &names), vec!["call bob, carol"]);
        assert_eq!(complete("reject b", &names), vec!["reject busy"]);
        assert_eq!(complete("add ca", &names), vec!["add carol"]);
        assert_eq!(
            complete("remove bo", &names),
            vec!["remove bob", "remove bobby"]
        );
        assert_eq!(complete("hangup a", &names), vec!["hangup all"]);
        assert!(complete("zz", &names).is_empty());
        assert!(complete("mic x", &names).is_empty());
        assert_eq!(
            complete("transfer ", &names),
            vec![
                "transfer bob",
                "transfer bobby",
                "transfer carol",
                "transfer voicemail",
                "transfer call"
            ]
        );
        assert_eq!(complete("transfer c", &names)[0], "transfer carol");
        assert_eq!(
            complete("transfer voicemail ca", &names),
            vec!["transfer voicemail carol"]
        );
        assert_eq!(
            complete("transfer carol n", &names),
            vec!["transfer carol noforward"]
        );
        assert_eq!(
            complete("forward ", &names),
            vec!["forward off", "forward always", "forward unanswered"]
        );
        assert_eq!(
            complete("forward unanswered v", &names),
            vec!["forward unanswered voicemail"]
        );
        let with_echo = vec!["echo".to_string(), "bob".to_string()];
        assert_eq!(
            complete("forward always ", &with_echo),
            vec!["forward always voicemail", "forward always bob"]
        );
    }
}
