//! The in-memory network of the flow tests: one `Switchboard` and several `CallAgentCore`s
//! wired together, with simulated time.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dialtone::core::{
    CallAgentCore, CallEndReason, CallState, Command, CommandError, CommandOk, Event, Input,
    MediaControl, Now, Output,
};
use dialtone::protocol::encode;
use dialtone::server::switchboard::{self as sb, ConnId, Startup, Switchboard, SwitchboardConfig};
use dialtone::server::token::TokenKey;

pub struct Peer {
    pub core: CallAgentCore,
    pub conn: ConnId,
    pub events: Vec<Event>,
    pub media: Vec<MediaControl>,
    pub open: bool,
    /// Whether this device's media link comes up when answered (false: a network that drops
    /// its UDP, with no relay).
    pub media_path: bool,
    /// Times the core asked to drop its connection and dial again, and to drop its media link.
    pub reconnects: u32,
    pub media_drops: u32,
    /// Media links asked for (`CreateMediaOffer`).
    pub media_offers: u32,
}

pub struct Net {
    pub sb: Switchboard,
    pub peers: Vec<Peer>,
    pub now: Now,
    pub routes: BTreeMap<ConnId, Vec<ConnId>>,
    pub next_conn: ConnId,
    pub key: TokenKey,
    /// Voicemail sessions the switchboard asked for that are still recording: call id -> conn.
    pub recording: BTreeMap<String, ConnId>,
    /// Every non-message output, for assertions.
    pub outs: Vec<sb::Output>,
}

pub const RING: Duration = Duration::from_secs(30);

impl Net {
    pub fn new() -> Net {
        Net::with_startup(Startup::default())
    }

    pub fn with_startup(startup: Startup) -> Net {
        Net::with(startup, Duration::ZERO, Duration::ZERO)
    }

    /// A switchboard that keeps a lost device's place for `window` and takes a connection
    /// silent for `keepalive` as lost. The plain `Net` has neither: a vanished device is gone.
    pub fn with_reconnect(window: Duration, keepalive: Duration) -> Net {
        Net::with(Startup::default(), window, keepalive)
    }

    fn with(startup: Startup, reconnect_window: Duration, keepalive_timeout: Duration) -> Net {
        let key = TokenKey::from_bytes([3; 32]);
        let cfg = SwitchboardConfig {
            dev: true,
            resource: "res".into(),
            ring_timeout: RING,
            max_bad_frames: 5,
            voicemail_dir: "/vm".into(),
            voicemail_max: Duration::from_secs(60),
            media: ["127.0.0.1:7451", "10.0.0.5:7451"]
                .iter()
                .map(|a| sb::network::MediaAddr::direct(a.parse().unwrap()))
                .collect(),
            turn: Some(sb::network::TurnConfig {
                urls: vec!["turn:10.0.0.9:3478?transport=tcp".into()],
                secret: "shared".into(),
                ttl: Duration::from_secs(3600),
            }),
            reconnect_window,
            keepalive_timeout,
        };
        Net {
            sb: Switchboard::new(cfg, key.clone(), startup),
            peers: Vec::new(),
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
            routes: BTreeMap::new(),
            next_conn: 1,
            key,
            recording: BTreeMap::new(),
            outs: Vec::new(),
        }
    }

    pub fn join_with(&mut self, user: Option<&str>, token: Option<String>, device: &str) -> usize {
        let conn = self.next_conn;
        self.next_conn += 1;
        let mut n = 0u32;
        let prefix = format!("{}-{device}", user.unwrap_or("t"));
        let core = CallAgentCore::new(
            user.map(str::to_string),
            token,
            device.into(),
            Box::new(move || {
                n += 1;
                format!("{prefix}-call{n}")
            }),
        );
        self.peers.push(Peer {
            core,
            conn,
            events: vec![],
            media: vec![],
            open: true,
            media_path: true,
            reconnects: 0,
            media_drops: 0,
            media_offers: 0,
        });
        let i = self.peers.len() - 1;
        self.open_conn(conn);
        self.peers[i]
            .core
            .handle_input(Input::TransportUp, self.now);
        self.pump();
        i
    }

    fn open_conn(&mut self, conn: ConnId) {
        self.sb.handle(
            sb::Input::Opened {
                conn,
                loopback: true,
                local: Some("127.0.0.1:7450".parse().unwrap()),
                secret: 0x5eed_0000 + u128::from(conn),
            },
            self.now,
        );
    }

    /// Device `i` comes back on a new connection (after `vanish` or `freeze`).
    pub fn reconnect(&mut self, i: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.peers[i].conn = conn;
        self.peers[i].open = true;
        self.open_conn(conn);
        self.peers[i]
            .core
            .handle_input(Input::TransportUp, self.now);
        self.pump();
    }

    /// Device `i`'s connection goes dead without a word (a pulled cable, a frozen process):
    /// nothing reaches either side, nobody is told.
    pub fn freeze(&mut self, i: usize) {
        self.peers[i].open = false;
    }

    /// Advances time in 100 ms ticks, ticking every core whose connection is up (as its driver
    /// would) and the switchboard's timers.
    pub fn tick_for(&mut self, d: Duration) {
        for _ in 0..(d.as_millis() / 100) {
            self.now = self.now.plus(Duration::from_millis(100));
            for i in 0..self.peers.len() {
                self.peers[i].core.handle_input(Input::Tick, self.now);
            }
            if self.sb.poll_timeout().is_some_and(|t| t <= self.now.mono) {
                self.sb.handle(sb::Input::Tick, self.now);
            }
            self.pump();
        }
    }

    pub fn join(&mut self, user: &str, device: &str) -> usize {
        self.join_with(Some(user), None, device)
    }

    pub fn cmd(&mut self, i: usize, c: Command) -> Result<CommandOk, CommandError> {
        let r = self.peers[i].core.handle_command(c, self.now);
        self.pump();
        r
    }

    pub fn hang_up(&mut self, i: usize, call_id: &str, for_everyone: bool) {
        self.cmd(
            i,
            Command::HangUp {
                call_id: call_id.into(),
                for_everyone,
            },
        )
        .unwrap();
    }

    pub fn call(&mut self, i: usize, to: &str) -> String {
        match self
            .cmd(
                i,
                Command::Call {
                    to: vec![to.into()],
                    alternate_caller_id: None,
                },
            )
            .unwrap()
        {
            CommandOk::CallId(id) => id,
            other => panic!("{other:?}"),
        }
    }

    pub fn frame(&mut self, i: usize, text: &str) {
        let conn = self.peers[i].conn;
        self.sb.handle(
            sb::Input::Frame {
                conn,
                text: text.into(),
            },
            self.now,
        );
        self.pump();
    }

    pub fn vanish(&mut self, i: usize) {
        self.lose(i);
        self.pump();
    }

    /// Device `i`'s connection breaks (no close frame); both sides are told.
    fn lose(&mut self, i: usize) {
        if self.peers[i].open {
            self.peers[i].open = false;
            let conn = self.peers[i].conn;
            self.sb
                .handle(sb::Input::Closed { conn, clean: false }, self.now);
        }
        self.peers[i]
            .core
            .handle_input(Input::TransportDown, self.now);
    }

    /// Lets `d` pass in steps of 100 ms, each with the media statistics a driver reports:
    /// `received(i)` is device i's running count of audio packets.
    pub fn run_media(&mut self, d: Duration, received: impl Fn(usize) -> u64) {
        let steps = (d.as_millis() / 100) as usize;
        for _ in 0..steps {
            self.advance(Duration::from_millis(100));
            for i in 0..self.peers.len() {
                if self.peers[i].open {
                    let r = received(i);
                    self.peers[i]
                        .core
                        .handle_input(Input::MediaStats { received: r }, self.now);
                }
            }
            self.pump();
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
        if self.sb.poll_timeout().is_some_and(|t| t <= self.now.mono) {
            self.sb.handle(sb::Input::Tick, self.now);
        }
        self.pump();
    }

    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.peers.len() {
                while let Some(out) = self.peers[i].core.poll_output() {
                    progressed = true;
                    let conn = self.peers[i].conn;
                    match out {
                        Output::Send(msg) => {
                            if self.peers[i].open {
                                self.sb.handle(
                                    sb::Input::Frame {
                                        conn,
                                        text: encode(&msg),
                                    },
                                    self.now,
                                );
                            }
                        }
                        Output::Event(e) => self.peers[i].events.push(e),
                        Output::CreateMediaOffer { .. } => {
                            self.peers[i].media_offers += 1;
                            self.peers[i].core.handle_input(
                                Input::MediaOfferReady {
                                    sdp: "v=0 offer".into(),
                                },
                                self.now,
                            );
                        }
                        Output::ApplyMediaAnswer { .. } if self.peers[i].media_path => self.peers
                            [i]
                            .core
                            .handle_input(Input::MediaConnected(true), self.now),
                        Output::ApplyMediaAnswer { .. } => {}
                        Output::Media(m) => self.peers[i].media.push(m),
                        Output::DropMedia => self.peers[i].media_drops += 1,
                        Output::Reconnect(_) => {
                            // The driver drops the connection (and dials again: `reconnect`).
                            self.peers[i].reconnects += 1;
                            self.lose(i);
                        }
                    }
                }
            }
            while let Some(out) = self.sb.poll_output() {
                progressed = true;
                match out {
                    sb::Output::Send { conn, msg } => {
                        let now = self.now;
                        if let Some(p) = self.peers.iter_mut().find(|p| p.conn == conn && p.open) {
                            p.core.handle_input(Input::Server(msg), now);
                        }
                    }
                    sb::Output::Close { conn, .. } => {
                        self.outs.push(out.clone());
                        let now = self.now;
                        self.sb.handle(sb::Input::Closed { conn, clean: true }, now);
                        if let Some(p) = self.peers.iter_mut().find(|p| p.conn == conn && p.open) {
                            p.open = false;
                            p.core.handle_input(Input::TransportDown, now);
                        }
                    }
                    sb::Output::CreateMedia { conn, .. } => {
                        self.outs.push(out);
                        self.sb.handle(
                            sb::Input::MediaAnswered {
                                conn,
                                sdp: "v=0 answer".into(),
                            },
                            self.now,
                        );
                        self.sb
                            .handle(sb::Input::MediaConnected { conn, up: true }, self.now);
                    }
                    sb::Output::Routes(r) => self.routes = r,
                    sb::Output::Attach { socket, device } => {
                        if let Some(p) = self.peers.iter_mut().find(|p| p.conn == socket) {
                            p.conn = device;
                        }
                    }
                    sb::Output::StartVoicemail {
                        ref call_id, conn, ..
                    } => {
                        self.recording.insert(call_id.clone(), conn);
                        self.outs.push(out);
                    }
                    sb::Output::StopVoicemail { ref call_id } => {
                        // The recorder stops and reports what it made: 3 s of audio.
                        self.recording.remove(call_id);
                        let ended = sb::Input::VoicemailEnded {
                            call_id: call_id.clone(),
                            duration_ms: 3000,
                            full: false,
                        };
                        self.outs.push(out);
                        self.sb.handle(ended, self.now);
                    }
                    other => self.outs.push(other),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    pub fn state(&self, i: usize, call: &str) -> Option<CallState> {
        self.peers[i]
            .core
            .calls()
            .into_iter()
            .find(|c| c.call_id == call)
            .map(|c| c.state)
    }

    pub fn ended(&self, i: usize, call: &str) -> Option<CallEndReason> {
        self.peers[i].events.iter().find_map(|e| match e {
            Event::CallEnded { call_id, reason } if call_id == call => Some(*reason),
            _ => None,
        })
    }

    pub fn incoming(&self, i: usize) -> Option<String> {
        self.peers[i].events.iter().rev().find_map(|e| match e {
            Event::IncomingCall { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
    }

    pub fn states(&self, i: usize, call: &str) -> Vec<CallState> {
        self.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::CallStateChanged { call_id, state } if call_id == call => Some(*state),
                _ => None,
            })
            .collect()
    }

    pub fn connect(&mut self) -> (usize, usize, String) {
        let a = self.join("alice", "desk");
        let b = self.join("bob", "laptop");
        let id = self.call(a, "bob");
        let inc = self.incoming(b).expect("bob rings");
        assert_eq!(inc, id);
        self.cmd(
            b,
            Command::Accept {
                call_id: id.clone(),
            },
        )
        .unwrap();
        (a, b, id)
    }
}
