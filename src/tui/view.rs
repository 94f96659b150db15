//! Pure rendering of an [`App`] into a ratatui frame. Nothing here changes state or does I/O, so
//! the same App always draws the same screen (the snapshot tests rely on it).
//!
//! Layout, top to bottom: the status line, an optional banner, the body (calls and participants
//! over history, or the device manager), the notifications line, and the key hints or the text
//! field being typed into. The voicemail panel and the device manager take the body's place.
//! Popups (incoming call, transfer prompt, transfer request, questions, help) are drawn last,
//! over the body. Works from 80x24; extra room goes to the lists.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap,
};

use crate::core::{CallState, Direction, ParticipantState};
use crate::protocol::{Participant, TransferState};

use super::app::{
    App, Banner, CallRow, Connection, Layer, Level, Pane, Slot, TransferRequest, TransferStep,
    participant_name,
};
use super::cmdline::COMMANDS;
use super::input::TextField;
use super::keymap::{Cmd, Context};
use super::strings as s;
use super::theme::Theme;

pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    let banner_h = u16::from(app.shown_banner().is_some());
    // A long notice (an error with its cause) wraps onto up to three lines.
    let notice_h = app.notice.as_ref().map_or(1, |n| {
        let w = n.text.chars().count() + 3;
        (w.div_ceil(usize::from(area.width.max(1)))).clamp(1, 3) as u16
    });
    let [status, banner, body, notice, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_h),
        Constraint::Min(3),
        Constraint::Length(notice_h),
        Constraint::Length(1),
    ])
    .areas(area);
    status_line(f, app, status);
    if let Some(b) = app.shown_banner() {
        banner_line(f, app, b, banner);
    }
    if app.devman.open {
        devices_panel(f, app, body);
    } else if app.voicemail.open {
        voicemail_panel(f, app, body);
    } else {
        main_body(f, app, body);
    }
    notice_line(f, app, notice);
    bottom_line(f, app, bottom);

    let layers = app.layers();
    // Popups, lowest first so the top one is drawn last.
    for layer in layers.iter().rev() {
        match layer {
            Layer::Incoming(id) => {
                if let Some(c) = app.calls.iter().find(|c| &c.call_id == id) {
                    incoming_popup(f, app, c, body);
                }
            }
            Layer::TransferRequest(id) => {
                if let Some(r) = app.transfer_requests.iter().find(|r| &r.call_id == id) {
                    transfer_request_popup(f, app, r, body);
                }
            }
            Layer::Transfer => transfer_popup(f, app, body),
            Layer::Help => help_popup(f, app, area),
            Layer::Confirm => confirm_popup(f, app, body),
            Layer::ConfirmDelete => delete_popup(f, app, body),
            Layer::ConfirmRemove => remove_popup(f, app, body),
            _ => {}
        }
    }
}

// ---- status line and banner ---------------------------------------------------------------------

fn status_line(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let (mark, text, style) = match &app.connection {
        Connection::Starting => ("○", s::CONN_STARTING.to_string(), t.dim()),
        Connection::Connecting => ("○", s::CONN_CONNECTING.to_string(), t.warn()),
        Connection::Connected => ("●", s::CONN_CONNECTED.to_string(), t.ok()),
        Connection::Disconnected(_) if app.reconnecting() => {
            ("⟳", s::CONN_RECONNECTING.to_string(), t.warn())
        }
        Connection::Disconnected(r) => {
            let reason = s::connection_reason(*r);
            let text = if reason.is_empty() {
                s::CONN_DISCONNECTED.to_string()
            } else {
                format!("{} ({reason})", s::CONN_DISCONNECTED)
            };
            ("○", text, t.error())
        }
        Connection::Failed(_) => ("✕", s::CONN_FAILED.to_string(), t.error()),
    };
    let mut mic = vec![
        Span::styled(format!("{} ", s::slot_short(Slot::Microphone)), t.dim()),
        Span::raw(app.devices.microphone.clone()),
    ];
    if let Some(level) = app.mic_level.filter(|_| app.wants_levels()) {
        mic.push(Span::raw(" "));
        mic.extend(meter(t, level, 6));
    }
    let server = if app.embedded {
        format!("{} ({})", app.server, s::EMBEDDED)
    } else {
        app.server.clone()
    };
    // Segments in order of importance; the later ones are left out when the line is too narrow.
    let mut segments: Vec<Vec<Span>> = vec![
        vec![
            Span::styled(app.user.clone(), t.title()),
            Span::raw(format!(" @ {}", app.device_name)),
        ],
        connection_segment(app, format!("{mark} {text}"), style),
    ];
    if let Some((new, total)) = app.message_waiting.filter(|(_, total)| *total > 0) {
        let style = if new > 0 { t.alert() } else { t.dim() };
        segments.push(vec![Span::styled(s::message_waiting(new, total), style)]);
    }
    segments.extend([
        mic,
        vec![
            Span::styled(format!("{} ", s::slot_short(Slot::Speaker)), t.dim()),
            Span::raw(app.devices.speaker.clone()),
        ],
        vec![Span::styled(server, t.dim())],
    ]);
    let mut spans = vec![Span::styled(format!(" {} ", s::APP_NAME), t.title())];
    let mut used = spans[0].width();
    for (i, seg) in segments.into_iter().enumerate() {
        let w: usize = 3 + seg.iter().map(Span::width).sum::<usize>();
        // Identity and connection always show; the rest only when they fit whole.
        if i >= 2 && used + w > area.width as usize {
            break;
        }
        used += w;
        spans.push(Span::styled(" │ ", t.dim()));
        spans.extend(seg);
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The connection state, and a warning when it crosses the network unencrypted (plain ws:// to
/// another host): part of the segment that always shows.
fn connection_segment(app: &App, state: String, style: Style) -> Vec<Span<'static>> {
    let mut seg = vec![Span::styled(state, style)];
    if crate::engine::tls::is_unencrypted_remote(&app.server) {
        seg.push(Span::raw(" "));
        seg.push(Span::styled(s::UNENCRYPTED, app.theme.warn()));
    }
    if let Some(crate::media::net::Via::Relay(t)) = app.media_path {
        seg.push(Span::raw(" "));
        seg.push(Span::styled(s::via_relay(t), app.theme.dim()));
    }
    // Media warnings (no microphone, no speaker, speaking while muted), each once.
    let mut shown: Vec<&str> = Vec::new();
    for d in &app.media_warnings {
        let w = s::media_warning(*d);
        if !shown.contains(&w) {
            shown.push(w);
            let style = match d {
                crate::core::media_diagnostics::MediaDiagnostic::SpeakingWhileMicrophoneIsMuted => {
                    app.theme.alert()
                }
                _ => app.theme.warn(),
            };
            seg.push(Span::raw(" "));
            seg.push(Span::styled(w, style));
        }
    }
    seg
}

/// A level meter of `width` cells: filled cells ■, empty ones ·.
fn meter(t: &Theme, level: f32, width: usize) -> Vec<Span<'static>> {
    let filled = ((level.clamp(0.0, 1.0) * width as f32).round() as usize).min(width);
    let style = if level > 0.9 { t.error() } else { t.ok() };
    vec![
        Span::styled("■".repeat(filled), style),
        Span::styled("·".repeat(width - filled), t.dim()),
    ]
}

/// "In a call with bob on laptop — T take over, J join".
fn banner_line(f: &mut Frame, app: &App, b: &Banner, area: Rect) {
    let t = &app.theme;
    let Banner::ActiveOnAnotherDevice(d) = b;
    let mut spans = vec![Span::styled(
        format!(" {} — ", s::active_elsewhere(&b.label(), &d.device_name)),
        t.alert(),
    )];
    let keys: Vec<Span> = [(Cmd::TakeOver, "take over"), (Cmd::JoinCall, "join")]
        .into_iter()
        .filter_map(|(cmd, label)| {
            let k = app.keymap.first(Context::Main, cmd)?;
            Some(vec![
                Span::styled(k.to_string(), t.key()),
                Span::styled(format!(" {label}"), t.alert()),
            ])
        })
        .collect::<Vec<_>>()
        .join(&Span::styled(", ", t.alert()));
    spans.extend(keys);
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

// ---- main body: calls, participants, history --------------------------------------------------------

fn panel<'a>(app: &App, title: &'a str, focused: bool) -> Block<'a> {
    let t = &app.theme;
    let style = if focused { t.focused() } else { t.plain() };
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(style)
        .title(Span::styled(
            format!(" {title} "),
            if focused { t.focused() } else { t.title() },
        ))
}

/// Wide screens put the participants beside the calls; narrow ones (under 100 columns) put them
/// under the calls, so the calls list gets the whole width.
fn main_body(f: &mut Frame, app: &App, area: Rect) {
    let calls_h = (app.calls.len() as u16 + 2).clamp(5, (area.height / 2).max(5));
    // The focused call's participants, and its transfer's line.
    let remote = app.focused_call().map_or(0, |c| {
        c.remote.len() + usize::from(c.transfer.is_some() && c.is_live())
    }) as u16;
    if area.width >= 100 {
        // Side by side: the row is as tall as the longer of the two lists.
        let top_h = calls_h.max((remote + 2).min((area.height / 2).max(5)));
        let [top, bottom] =
            Layout::vertical([Constraint::Length(top_h), Constraint::Min(3)]).areas(area);
        let [calls, parts] =
            Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(top);
        calls_panel(f, app, calls);
        participants_panel(f, app, parts);
        history_panel(f, app, bottom);
    } else {
        let parts_h = (remote.max(1) + 2).min((area.height / 3).max(5));
        let [calls, parts, history] = Layout::vertical([
            Constraint::Length(calls_h),
            Constraint::Length(parts_h),
            Constraint::Min(3),
        ])
        .areas(area);
        calls_panel(f, app, calls);
        participants_panel(f, app, parts);
        history_panel(f, app, history);
    }
}

fn call_state_style(t: &Theme, c: &CallRow) -> Style {
    if c.ended.is_some() {
        return t.dim();
    }
    match c.state {
        CallState::Connected => t.ok(),
        CallState::Incoming | CallState::Ringing | CallState::EarlyMedia => t.alert(),
        CallState::LocalHold | CallState::RemoteHold => t.warn(),
        CallState::Disconnecting | CallState::Disconnected => t.dim(),
        CallState::None | CallState::Connecting => t.plain(),
    }
}

fn calls_panel(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.pane == Pane::Calls && !app.devman.open;
    let block = panel(app, s::TITLE_CALLS, focused);
    if app.calls.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled(s::NO_CALLS, t.dim()))
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let flags: Vec<Line> = app.calls.iter().map(|c| call_flags(app, c)).collect();
    let flags_w = flags.iter().map(Line::width).max().unwrap_or(0);
    let rows = app
        .calls
        .iter()
        .zip(flags)
        .enumerate()
        .map(|(i, (c, flags))| {
            let mark = if i == app.focus { "▶" } else { " " };
            Row::new(vec![
                Cell::from(format!("{mark}{}", i + 1)),
                Cell::from(s::direction_arrow(c.direction)),
                Cell::from(c.label()),
                Cell::from(Span::styled(s::state_name(c.state), call_state_style(t, c))),
                Cell::from(s::duration(c.duration_ms(app.now.unix_ms))),
                Cell::from(flags),
            ])
            .style(if c.ended.is_some() {
                t.dim()
            } else {
                t.plain()
            })
        });
    // Long flags (a transfer's progress) get their width; the name gives way.
    let (name_w, flags_w) = if flags_w > 16 {
        (
            Constraint::Fill(1),
            Constraint::Length(flags_w.min(36) as u16),
        )
    } else {
        (Constraint::Fill(2), Constraint::Fill(1))
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(1),
            name_w,
            Constraint::Length(12),
            Constraint::Length(7),
            flags_w,
        ],
    )
    .block(block)
    .row_highlight_style(if focused { t.selected() } else { t.title() });
    let mut state = TableState::default().with_selected(Some(app.focus));
    f.render_stateful_widget(table, area, &mut state);
}

/// The last column of a call row: how it ended, or muted, a transfer's progress, a transfer
/// request, how the call came.
fn call_flags(app: &App, c: &CallRow) -> Line<'static> {
    let t = &app.theme;
    if let Some(e) = c.ended {
        let style = if e.reason.code == 0 {
            t.dim()
        } else {
            t.warn()
        };
        return Line::from(Span::styled(s::end_short(e.reason), style));
    }
    let mut flags: Vec<Span<'static>> = Vec::new();
    let mut push = |span: Span<'static>| {
        if !flags.is_empty() {
            flags.push(Span::raw(" "));
        }
        flags.push(span);
    };
    if app.reconnecting() {
        push(Span::styled(s::CALL_RECONNECTING, t.warn()));
    } else if let Some(d) = c.network {
        push(Span::styled(s::network_flag(d), t.warn()));
    } else if let Some(q) = app.quality.filter(|_| c.state == CallState::Connected) {
        use crate::core::diagnostics::Quality as Q;
        let worse = match (q.receive, q.send) {
            (Q::Bad, _) | (_, Q::Bad) => Q::Bad,
            (Q::Poor, _) | (_, Q::Poor) => Q::Poor,
            _ => Q::Good,
        };
        let style = match worse {
            Q::Good => t.ok(),
            Q::Poor => t.warn(),
            Q::Bad => t.error(),
        };
        push(Span::styled(s::quality_mark(worse), style));
    }
    if c.muted {
        push(Span::styled(s::MUTED, t.warn()));
    }
    if let Some(x) = &c.transfer {
        push(match x.state {
            TransferState::Transferring | TransferState::None => {
                Span::styled(s::transferring(&x.target), t.alert())
            }
            TransferState::Transferred => Span::styled(s::transferred_flag(&x.target), t.ok()),
            TransferState::Failed => Span::styled(s::transfer_failed_flag(x.error), t.error()),
        });
    } else if app.transfer_request_on(&c.call_id).is_some() {
        push(Span::styled(s::TRANSFER_ASKED, t.alert()));
    } else if let Some(v) = &c.via
        && !c.muted
    {
        push(Span::styled(s::via_text(v), t.dim()));
    }
    Line::from(flags)
}

/// The focused call's participants: a cursor when the panel has focus, `●` while speaking, who
/// (a number as `+15550100 (alice)`, my other devices as `(you, on laptop)`), their state, and
/// `muted`. Then our transfer of the call, if one runs or failed.
fn participants_panel(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let call = app.focused_call();
    let title = match call {
        Some(_) => format!("{} · {}", s::TITLE_PARTICIPANTS, app.focus + 1),
        None => s::TITLE_PARTICIPANTS.to_string(),
    };
    let focused = app.pane == Pane::Participants && !app.devman.open && !app.voicemail.open;
    let mut block = panel(app, &title, focused);
    // The call-info line: the network as this call sees it.
    if let Some(q) = app
        .quality
        .filter(|_| call.is_some_and(|c| c.state == CallState::Connected && c.is_live()))
    {
        block = block.title_bottom(Line::from(Span::styled(s::network_line(&q), t.dim())));
    }
    let Some(c) = call.filter(|c| !c.remote.is_empty()) else {
        f.render_widget(
            Paragraph::new(Span::styled(s::NO_PARTICIPANTS, t.dim())).block(block),
            area,
        );
        return;
    };
    let inner = block.inner(area);
    f.render_widget(block, area);
    let ended = c.ended.is_some();
    // The whole story of our transfer of this call, with the reason's code/subCode.
    let transfer = c
        .transfer
        .as_ref()
        .filter(|_| !ended)
        .map(|x| match x.state {
            TransferState::Transferring | TransferState::None => {
                (s::transferring(&x.target), t.alert())
            }
            TransferState::Transferred => (s::transferred_flag(&x.target), t.ok()),
            TransferState::Failed => (
                s::transfer_failed(&c.label(), &x.target, x.error, x.detail.as_deref()),
                t.error(),
            ),
        });
    let transfer_h = transfer.as_ref().map_or(0, |(text, _)| {
        let w = usize::from(inner.width.max(1));
        (text.chars().count().div_ceil(w) as u16).clamp(1, inner.height.saturating_sub(1).max(1))
    });
    let [list, foot] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(transfer_h)]).areas(inner);
    let selected =
        (focused && !ended).then(|| app.participant_cursor.min(c.remote.len().saturating_sub(1)));
    let rows = c.remote.iter().enumerate().map(|(i, p)| {
        let mark = if selected == Some(i) {
            s::SELECTED_PARTICIPANT
        } else {
            " "
        };
        if ended {
            return Row::new(vec![
                Cell::from(""),
                Cell::from(""),
                Cell::from(participant_label(p)),
            ])
            .style(t.dim());
        }
        let speaking = if p.is_speaking { s::SPEAKING_MARK } else { " " };
        let muted = if p.is_muted { s::MUTED } else { "" };
        Row::new(vec![
            Cell::from(mark),
            Cell::from(Span::styled(speaking, t.ok())),
            Cell::from(Line::from(participant_spans(app, p))),
            Cell::from(if p.reconnecting {
                Span::styled(s::PARTICIPANT_RECONNECTING, t.warn())
            } else {
                Span::styled(
                    s::participant_state(p.state),
                    participant_state_style(t, p.state),
                )
            }),
            Cell::from(Span::styled(muted, t.warn())),
        ])
    });
    // State and muted columns as wide as what they hold, so names get the rest.
    let state_w = c
        .remote
        .iter()
        .map(|p| {
            if p.reconnecting {
                s::PARTICIPANT_RECONNECTING
            } else {
                s::participant_state(p.state)
            }
            .chars()
            .count()
        })
        .max()
        .unwrap_or(0) as u16;
    let muted_w = if c.remote.iter().any(|p| p.is_muted) {
        s::MUTED.chars().count() as u16
    } else {
        0
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(state_w),
            Constraint::Length(muted_w),
        ],
    )
    .row_highlight_style(t.selected());
    let mut state = TableState::default().with_selected(selected);
    f.render_stateful_widget(table, list, &mut state);
    if let Some((text, style)) = transfer {
        f.render_widget(
            Paragraph::new(Span::styled(text, style)).wrap(Wrap { trim: false }),
            foot,
        );
    }
}

/// A participant's name as the panel shows it: `+15550100 (alice)`, `alice (you, on laptop)`.
fn participant_label(p: &Participant) -> String {
    match &p.device {
        Some(d) => format!("{} {}", participant_name(&p.identity), s::on_device(d)),
        None => participant_name(&p.identity),
    }
}

fn participant_spans(app: &App, p: &Participant) -> Vec<Span<'static>> {
    let t = &app.theme;
    let mut spans = vec![Span::styled(participant_name(&p.identity), t.title())];
    if let Some(d) = &p.device {
        spans.push(Span::styled(format!(" {}", s::on_device(d)), t.dim()));
    }
    spans
}

fn participant_state_style(t: &Theme, state: ParticipantState) -> Style {
    match state {
        ParticipantState::Connected => t.plain(),
        ParticipantState::Ringing | ParticipantState::Connecting | ParticipantState::EarlyMedia => {
            t.alert()
        }
        ParticipantState::Hold => t.warn(),
        ParticipantState::Idle | ParticipantState::Disconnected => t.dim(),
    }
}

fn history_panel(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.pane == Pane::History;
    let block = panel(app, s::TITLE_HISTORY, focused);
    if app.history.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled(s::NO_HISTORY, t.dim())).block(block),
            area,
        );
        return;
    }
    let rows = app.history.entries().map(|e| {
        let outcome = match (e.direction, e.connected_ms) {
            (_, Some(ms)) => Span::raw(s::duration(ms)),
            (Direction::Incoming, None) => Span::styled("missed", t.warn()),
            (Direction::Outgoing, None) => Span::styled("—", t.dim()),
        };
        let reason_style = if e.end_reason.code == 0 {
            t.dim()
        } else {
            t.warn()
        };
        Row::new(vec![
            Cell::from(s::direction_arrow(e.direction)),
            Cell::from(e.label.clone()),
            Cell::from(s::ago(e.started_unix_ms, app.now.unix_ms)),
            Cell::from(outcome),
            Cell::from(Span::styled(s::end_short(e.end_reason), reason_style)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(24),
        ],
    )
    .block(block)
    .row_highlight_style(if focused { t.selected() } else { Style::new() });
    let mut state = TableState::default().with_selected(focused.then_some(app.history_cursor));
    f.render_stateful_widget(table, area, &mut state);
}

// ---- voicemail -----------------------------------------------------------------------------------------

fn voicemail_panel(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let vm = &app.voicemail;
    let title = match (&vm.messages, app.message_waiting) {
        (Some(list), _) => s::voicemail_title(
            list.iter().filter(|m| m.is_new).count() as u32,
            list.len() as u32,
        ),
        (None, Some((new, total))) => s::voicemail_title(new, total),
        (None, None) => s::TITLE_VOICEMAIL.to_string(),
    };
    let block = panel(app, &title, true);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [list, _, detail, forwarding] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    match vm.messages.as_deref() {
        None => f.render_widget(
            Paragraph::new(Span::styled(s::LOADING_MESSAGES, t.dim())),
            list,
        ),
        Some([]) => f.render_widget(Paragraph::new(Span::styled(s::NO_MESSAGES, t.dim())), list),
        Some(messages) => {
            let rows = messages.iter().map(|m| {
                let playing = vm
                    .playing
                    .as_ref()
                    .is_some_and(|p| p.message_id == m.message_id)
                    || vm.loading.as_deref() == Some(m.message_id.as_str());
                Row::new(vec![
                    Cell::from(Span::styled(
                        if m.is_new { s::NEW_MARK } else { " " },
                        t.alert(),
                    )),
                    Cell::from(Span::styled(
                        if playing { s::PLAYING_MARK } else { " " },
                        t.ok(),
                    )),
                    Cell::from(Span::styled(
                        m.caller.display_name.clone(),
                        if m.is_new { t.title() } else { t.plain() },
                    )),
                    Cell::from(s::ago(m.received_unix_ms, app.now.unix_ms)),
                    Cell::from(s::duration(m.duration_ms)),
                ])
            });
            let table = Table::new(
                rows,
                [
                    Constraint::Length(1),
                    Constraint::Length(1),
                    Constraint::Fill(1),
                    Constraint::Length(9),
                    Constraint::Length(7),
                ],
            )
            .row_highlight_style(t.selected());
            let mut state = TableState::default().with_selected(Some(vm.cursor));
            f.render_stateful_widget(table, list, &mut state);
        }
    }
    if let Some(m) = vm.selected() {
        let spans = vec![
            Span::styled(m.caller.display_name.clone(), t.title()),
            Span::styled(format!(" · {}", m.caller.raw_id), t.dim()),
        ];
        f.render_widget(Paragraph::new(Line::from(spans)), detail);
    }
    let text = app
        .forwarding
        .as_ref()
        .map_or_else(|| s::FORWARDING_UNKNOWN.to_string(), s::forwarding_text);
    f.render_widget(Paragraph::new(Span::styled(text, t.dim())), forwarding);
}

// ---- device manager -----------------------------------------------------------------------------------

fn devices_panel(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let block = panel(app, s::TITLE_DEVICES, true);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [lists, detail, spec_line, level, problems] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let cols: [Rect; 3] = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .spacing(1)
    .areas(lists);
    let dm = &app.devman;
    for (i, slot) in Slot::ALL.into_iter().enumerate() {
        let active = dm.column == i;
        let title_style = if active { t.focused() } else { t.title() };
        let block = Block::default()
            .borders(Borders::TOP)
            .border_style(if active { t.focused() } else { t.dim() })
            .title(Span::styled(
                format!(" {} ", s::slot_name(slot)),
                title_style,
            ));
        let entries = dm.entries(slot);
        if dm.list.is_none() || entries.is_empty() {
            let text = if dm.list.is_none() {
                s::LOADING_DEVICES
            } else {
                s::NO_DEVICES
            };
            f.render_widget(
                Paragraph::new(Span::styled(text, t.dim())).block(block),
                cols[i],
            );
            continue;
        }
        let current = app.devices.get(slot);
        let rows = entries.iter().map(|e| {
            let chosen = Some(e.spec.as_str()) == current;
            let mark = if chosen { s::SELECTED_MARK } else { " " };
            let name_style = if e.template { t.dim() } else { t.plain() };
            Row::new(vec![
                Cell::from(Span::styled(mark, t.ok())),
                Cell::from(Span::styled(
                    e.name.clone(),
                    if chosen { t.title() } else { name_style },
                )),
            ])
        });
        let table = Table::new(rows, [Constraint::Length(1), Constraint::Fill(1)])
            .block(block)
            .row_highlight_style(if active { t.selected() } else { Style::new() });
        let mut state = TableState::default().with_selected(Some(dm.cursor[i]));
        f.render_stateful_widget(table, cols[i], &mut state);
    }
    // The entry under the cursor, in full: its spec is what the config and flags take.
    let slot = dm.column_slot();
    if let Some(e) = dm.entries(slot).get(dm.cursor[dm.column]) {
        let mut spans = vec![
            Span::styled(format!("{}: ", s::slot_name(slot)), t.dim()),
            Span::styled(e.name.clone(), t.title()),
        ];
        if e.is_default {
            spans.push(Span::styled(format!(" {}", s::DEFAULT_MARK), t.dim()));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), detail);
        let spec = vec![
            Span::styled(format!("{}: ", s::DEVICE_SPEC), t.dim()),
            Span::raw(e.spec.clone()),
        ];
        f.render_widget(Paragraph::new(Line::from(spec)), spec_line);
    }
    let mut spans = vec![Span::styled(format!("{} ", s::DEVICES_LEVEL), t.dim())];
    match app.mic_level {
        Some(l) => spans.extend(meter(t, l, 20)),
        None => spans.push(Span::styled(s::DEVICES_LEVEL_UNKNOWN, t.dim())),
    }
    f.render_widget(Paragraph::new(Line::from(spans)), level);
    if let Some(p) = dm.list.as_ref().and_then(|l| l.problems.first()) {
        f.render_widget(
            Paragraph::new(Span::styled(format!("note: {p}"), t.warn())),
            problems,
        );
    }
}

// ---- bottom lines ---------------------------------------------------------------------------------------

fn notice_line(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Some(n) = &app.notice else { return };
    let (mark, style) = match n.level {
        Level::Info => ("·", t.plain()),
        Level::Warn => ("!", t.warn()),
        Level::Error => ("✕", t.error()),
    };
    f.render_widget(
        Paragraph::new(Span::styled(format!(" {mark} {}", n.text), style))
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn hint(app: &App, ctx: Context, cmd: Cmd, label: &str) -> Vec<Span<'static>> {
    match app.keymap.first(ctx, cmd) {
        Some(k) => vec![
            Span::styled(k.to_string(), app.theme.key()),
            Span::raw(format!(" {label}  ")),
        ],
        None => Vec::new(),
    }
}

fn hints(app: &App, ctx: Context, items: &[(Cmd, &str)]) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (cmd, label) in items {
        spans.extend(hint(app, ctx, *cmd, label));
    }
    Line::from(spans)
}

/// Hints for a line `width` wide: the last two (help, quit) always show; the others in order
/// while they fit.
fn hints_fit(app: &App, ctx: Context, items: &[(Cmd, &str)], width: u16) -> Line<'static> {
    let (body, tail) = items.split_at(items.len().saturating_sub(2));
    let tail: Vec<Span> = tail
        .iter()
        .flat_map(|(cmd, label)| hint(app, ctx, *cmd, label))
        .collect();
    // The last hint's two trailing spaces may fall off the edge.
    let mut used = (1 + tail.iter().map(Span::width).sum::<usize>()).saturating_sub(2);
    let mut spans = vec![Span::raw(" ")];
    for (cmd, label) in body {
        let h = hint(app, ctx, *cmd, label);
        let w: usize = h.iter().map(Span::width).sum();
        if used + w > usize::from(width) {
            continue;
        }
        used += w;
        spans.extend(h);
    }
    spans.extend(tail);
    Line::from(spans)
}

fn field_line(
    f: &mut Frame,
    app: &App,
    area: Rect,
    prompt: &str,
    field: &TextField,
    extra: Vec<Span<'static>>,
) {
    let t = &app.theme;
    let text = field.text();
    let mut spans = vec![Span::styled(prompt.to_string(), t.key()), Span::raw(text)];
    spans.extend(extra);
    f.render_widget(Paragraph::new(Line::from(spans)), area);
    let x = area.x + (prompt.chars().count() + field.cursor()) as u16;
    f.set_cursor_position(Position {
        x: x.min(area.right().saturating_sub(1)),
        y: area.y,
    });
}

fn bottom_line(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if let Some(p) = &app.cmdline {
        let extra = match &p.completion {
            Some((c, i)) if c.len() > 1 => {
                vec![Span::styled(format!("   ({}/{})", i + 1, c.len()), t.dim())]
            }
            _ => Vec::new(),
        };
        return field_line(f, app, area, s::CMD_PROMPT, &p.field, extra);
    }
    if let Some(d) = &app.dialer {
        let mut extra = vec![Span::raw("   ")];
        for (i, name) in app.dialer_suggestions().into_iter().enumerate() {
            let style = if d.selected == Some(i) {
                t.selected()
            } else {
                t.dim()
            };
            extra.push(Span::styled(name, style));
            extra.push(Span::raw(" "));
        }
        return field_line(f, app, area, s::DIAL_PROMPT, &d.field, extra);
    }
    if let Some(p) = &app.add {
        let mut extra = vec![Span::raw("   ")];
        for (i, name) in app.add_suggestions().into_iter().enumerate() {
            let style = if p.selected == Some(i) {
                t.selected()
            } else {
                t.dim()
            };
            extra.push(Span::styled(name, style));
            extra.push(Span::raw(" "));
        }
        let n = app
            .calls
            .iter()
            .position(|c| c.call_id == p.call_id)
            .map_or(0, |i| i + 1);
        return field_line(f, app, area, &s::add_prompt(n), &p.field, extra);
    }
    if let Some(p) = &app.caller_id_prompt {
        return field_line(f, app, area, s::CALLER_ID_PROMPT, &p.field, Vec::new());
    }
    let line = match app.layers().first() {
        Some(Layer::Transfer) => transfer_hints(app),
        Some(Layer::TransferRequest(_)) => hints(
            app,
            Context::TransferRequest,
            &[
                (Cmd::Accept, "accept"),
                (Cmd::Reject, "reject"),
                (Cmd::Back, "later"),
            ],
        ),
        Some(Layer::Voicemail) => hints(
            app,
            Context::Voicemail,
            &[
                (Cmd::Play, "play"),
                (Cmd::Stop, "stop"),
                (Cmd::ToggleNew, "new/heard"),
                (Cmd::Delete, "delete"),
                (Cmd::Forwarding, "forwarding"),
                (Cmd::Refresh, "refresh"),
                (Cmd::Back, "close"),
            ],
        ),
        Some(Layer::ConfirmDelete) => hints(
            app,
            Context::Confirm,
            &[(Cmd::Confirm, "delete"), (Cmd::Back, "keep")],
        ),
        Some(Layer::ConfirmRemove) => hints(
            app,
            Context::Confirm,
            &[(Cmd::Confirm, "remove"), (Cmd::Back, "keep")],
        ),
        Some(Layer::Participants) => {
            let mut line = hints(
                app,
                Context::Participants,
                &[
                    (Cmd::AddParticipant, "add"),
                    (Cmd::RemoveParticipant, "remove"),
                    (Cmd::Down, "next"),
                    (Cmd::Back, "calls"),
                ],
            );
            let group = app.focused_call().is_some_and(|c| c.group && c.is_live());
            let more: &[(Cmd, &str)] = if group {
                &[
                    (Cmd::HangUp, "hang up"),
                    (Cmd::HangUpAll, "end for all"),
                    (Cmd::Mute, "mute"),
                ]
            } else {
                &[(Cmd::HangUp, "hang up"), (Cmd::Mute, "mute")]
            };
            for (cmd, label) in more {
                line.spans.extend(hint(app, Context::Main, *cmd, label));
            }
            line
        }
        Some(Layer::Devices) => hints(
            app,
            Context::Devices,
            &[
                (Cmd::Select, "use"),
                (Cmd::NextColumn, "column"),
                (Cmd::TestTone, "test tone"),
                (Cmd::EchoTest, "echo call"),
                (Cmd::Refresh, "refresh"),
                (Cmd::Back, "close"),
                (Cmd::Help, "help"),
            ],
        ),
        Some(Layer::Help) => hints(
            app,
            Context::Help,
            &[(Cmd::Down, "scroll"), (Cmd::Back, "close")],
        ),
        Some(Layer::Incoming(_)) => hints(
            app,
            Context::Incoming,
            &[
                (Cmd::Accept, "accept"),
                (Cmd::Reject, "decline"),
                (Cmd::RejectBusy, "busy"),
                (Cmd::Back, "later"),
            ],
        ),
        Some(Layer::Confirm) => hints(
            app,
            Context::Confirm,
            &[(Cmd::Confirm, "hang up and quit"), (Cmd::Back, "stay")],
        ),
        _ => {
            let live = app.focused_call().is_some_and(|c| c.is_live());
            let group = live && app.focused_call().is_some_and(|c| c.group);
            let items: &[(Cmd, &str)] = if group {
                &[
                    (Cmd::HangUp, "hang up"),
                    (Cmd::HangUpAll, "end for all"),
                    (Cmd::Mute, "mute"),
                    (Cmd::Hold, "hold"),
                    (Cmd::AddParticipant, "add"),
                    (Cmd::NextPanel, "participants"),
                    (Cmd::Dial, "call"),
                    (Cmd::CommandLine, "command"),
                    (Cmd::NextCall, "next"),
                    (Cmd::Help, "help"),
                    (Cmd::Quit, "quit"),
                ]
            } else if live {
                &[
                    (Cmd::HangUp, "hang up"),
                    (Cmd::Mute, "mute"),
                    (Cmd::Hold, "hold"),
                    (Cmd::Transfer, "transfer"),
                    (Cmd::AddParticipant, "add"),
                    (Cmd::Dial, "call"),
                    (Cmd::CommandLine, "command"),
                    (Cmd::NextCall, "next"),
                    (Cmd::Devices, "devices"),
                    (Cmd::Help, "help"),
                    (Cmd::Quit, "quit"),
                ]
            } else {
                &[
                    (Cmd::Dial, "call"),
                    (Cmd::EchoTest, "echo test"),
                    (Cmd::Voicemail, "voicemail"),
                    (Cmd::Devices, "devices"),
                    (Cmd::CommandLine, "command"),
                    (Cmd::NextPanel, "history"),
                    (Cmd::Help, "help"),
                    (Cmd::Quit, "quit"),
                ]
            };
            hints_fit(app, Context::Main, items, area.width)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

// ---- popups ---------------------------------------------------------------------------------------------

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup_block<'a>(title: &'a str, style: Style) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(style)
        .title(Span::styled(format!(" {title} "), style))
}

fn incoming_popup(f: &mut Frame, app: &App, call: &CallRow, body: Rect) {
    let t = &app.theme;
    let caller = call
        .caller
        .clone()
        .or_else(|| call.remote.first().map(|p| p.identity.clone()));
    let name = caller
        .as_ref()
        .map_or_else(|| call.label(), participant_name);
    let raw = caller.map(|c| c.raw_id).unwrap_or_default();
    let typing = app.cmdline.is_some()
        || app.dialer.is_some()
        || app.transfer.is_some()
        || app.add.is_some()
        || app.caller_id_prompt.is_some();
    let mut name_line = vec![Span::raw("  "), Span::styled(name, t.title())];
    if let Some(v) = &call.via {
        name_line.push(Span::styled(format!(", {}", s::via_text(v)), t.alert()));
        name_line.push(Span::raw(","));
    }
    let (verb, title) = if call.group {
        (s::INCOMING_ADDING, s::TITLE_INCOMING_GROUP)
    } else {
        (s::INCOMING_CALLING, s::TITLE_INCOMING)
    };
    name_line.push(Span::raw(format!(" {verb}")));
    // Reached on one of my numbers: say so under the caller's number.
    let detail = if raw.starts_with("4:") {
        s::INCOMING_TO_NUMBER.to_string()
    } else {
        raw
    };
    let mut lines = vec![
        Line::raw(""),
        Line::from(name_line),
        Line::from(Span::styled(format!("  {detail}"), t.dim())),
        Line::raw(""),
    ];
    let mut keys = vec![Span::raw(" ")];
    for (cmd, label) in [
        (Cmd::Accept, "accept"),
        (Cmd::Reject, "decline"),
        (Cmd::RejectBusy, "busy"),
        (Cmd::Back, "later"),
    ] {
        keys.extend(hint(app, Context::Incoming, cmd, label));
    }
    lines.push(Line::from(keys));
    if typing {
        lines.push(Line::from(Span::styled(
            format!("  {}", s::INCOMING_WHILE_TYPING),
            t.warn(),
        )));
    }
    let area = popup(body, 56, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(popup_block(title, t.alert())),
        area,
    );
}

fn transfer_request_popup(f: &mut Frame, app: &App, r: &TransferRequest, body: Rect) {
    let t = &app.theme;
    let n = app.calls.iter().position(|c| c.call_id == r.call_id);
    let title = match n {
        Some(i) => format!("{} · call {}", s::TITLE_TRANSFER_REQUEST, i + 1),
        None => s::TITLE_TRANSFER_REQUEST.to_string(),
    };
    let lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw("  "),
            Span::styled(s::transfer_request_asks(&r.from), t.title()),
        ]),
        Line::raw(format!(
            "  {}",
            s::transfer_request_target(r.kind, &r.target)
        )),
        Line::from(Span::styled(format!("  {}", r.target_raw), t.dim())),
        Line::raw(""),
        hints(
            app,
            Context::TransferRequest,
            &[
                (Cmd::Accept, "accept"),
                (Cmd::Reject, "reject"),
                (Cmd::Back, "later"),
            ],
        ),
    ];
    let area = popup(body, 62, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(popup_block(&title, t.alert())),
        area,
    );
}

/// The transfer prompt: the three ways, then a name (with suggestions) or one of my calls.
fn transfer_popup(f: &mut Frame, app: &App, body: Rect) {
    let t = &app.theme;
    let Some(p) = &app.transfer else { return };
    let key = |cmd: Cmd| {
        app.keymap
            .first(Context::Transfer, cmd)
            .map(|k| k.to_string())
            .unwrap_or_default()
    };
    let mut lines = vec![Line::raw("")];
    let mut cursor: Option<(u16, u16)> = None;
    match p.step {
        TransferStep::Choose => {
            for (i, (step, cmd)) in TransferStep::CHOICES
                .into_iter()
                .zip([Cmd::ToParticipant, Cmd::ToCall, Cmd::ToVoicemail])
                .enumerate()
            {
                let style = if i == p.choice {
                    t.selected()
                } else {
                    t.plain()
                };
                lines.push(Line::from(vec![
                    Span::raw("  "),
                    Span::styled(format!("{:<8}", key(cmd)), t.key()),
                    Span::styled(s::transfer_choice(step), style),
                ]));
            }
        }
        TransferStep::Participant | TransferStep::Voicemail => {
            lines.push(Line::from(Span::styled(
                format!("  {}", s::transfer_choice(p.step)),
                t.dim(),
            )));
            let text = p.field.text();
            cursor = Some((
                (2 + s::TRANSFER_TO.chars().count() + p.field.cursor()) as u16,
                lines.len() as u16,
            ));
            lines.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(s::TRANSFER_TO, t.key()),
                Span::raw(text),
            ]));
            let mut sugg = vec![Span::raw("      ")];
            for (i, name) in app.transfer_suggestions().into_iter().enumerate() {
                let style = if p.selected == Some(i) {
                    t.selected()
                } else {
                    t.dim()
                };
                sugg.push(Span::styled(name, style));
                sugg.push(Span::raw(" "));
            }
            lines.push(Line::from(sugg));
        }
        TransferStep::Call => {
            lines.push(Line::from(Span::styled(
                format!("  {}", s::transfer_pick_call(&p.label)),
                t.dim(),
            )));
            for (i, c) in app
                .transfer_call_targets(&p.call_id)
                .into_iter()
                .enumerate()
            {
                let n = app
                    .calls
                    .iter()
                    .position(|x| x.call_id == c.call_id)
                    .map_or(0, |n| n + 1);
                let style = if i == p.call_cursor {
                    t.selected()
                } else {
                    t.plain()
                };
                lines.push(Line::from(vec![
                    Span::raw("  "),
                    Span::styled(
                        format!(
                            "{} {n}  {:<20} {}",
                            if i == p.call_cursor { "▶" } else { " " },
                            c.label(),
                            s::state_name(c.state)
                        ),
                        style,
                    ),
                ]));
            }
        }
    }
    lines.push(Line::raw(""));
    if p.step != TransferStep::Call {
        // In a text field only a key with Ctrl or Alt can toggle.
        let fwd_key = if matches!(p.step, TransferStep::Participant | TransferStep::Voicemail) {
            app.keymap
                .keys(Context::Transfer, Cmd::NoForwarding)
                .iter()
                .map(|k| k.to_string())
                .find(|k| k.starts_with("Ctrl-") || k.starts_with("Alt-"))
                .unwrap_or_default()
        } else {
            key(Cmd::NoForwarding)
        };
        let style = if p.disable_forwarding {
            t.warn()
        } else {
            t.plain()
        };
        lines.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(format!("{fwd_key:<8}"), t.key()),
            Span::styled(s::transfer_forwarding(p.disable_forwarding), style),
        ]));
        lines.push(Line::raw(""));
    }
    let height = lines.len() as u16 + 2;
    let area = popup(body, 64, height);
    let title = s::transfer_title(&p.label);
    let block = popup_block(&title, t.focused());
    let inner = block.inner(area);
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(block), area);
    if let Some((x, y)) = cursor
        && y < inner.height
    {
        f.set_cursor_position(Position {
            x: (inner.x + x).min(inner.right().saturating_sub(1)),
            y: inner.y + y,
        });
    }
}

fn transfer_hints(app: &App) -> Line<'static> {
    let Some(p) = &app.transfer else {
        return Line::default();
    };
    match p.step {
        TransferStep::Choose => hints(
            app,
            Context::Transfer,
            &[
                (Cmd::Select, "choose"),
                (Cmd::NoForwarding, "forwarding"),
                (Cmd::Back, "cancel"),
            ],
        ),
        TransferStep::Call => hints(
            app,
            Context::Transfer,
            &[
                (Cmd::Select, "transfer"),
                (Cmd::Down, "next"),
                (Cmd::Back, "back"),
            ],
        ),
        TransferStep::Participant | TransferStep::Voicemail => Line::from(vec![
            Span::raw(" "),
            Span::styled("Enter", app.theme.key()),
            Span::raw(" transfer  "),
            Span::styled("Tab", app.theme.key()),
            Span::raw(" complete  "),
            Span::styled("Esc", app.theme.key()),
            Span::raw(" back"),
        ]),
    }
}

fn delete_popup(f: &mut Frame, app: &App, body: Rect) {
    let vm = &app.voicemail;
    let Some(m) = vm
        .confirm_delete
        .as_ref()
        .and_then(|id| vm.messages.as_ref()?.iter().find(|m| &m.message_id == id))
    else {
        return;
    };
    let question = s::delete_question(
        &m.caller.display_name,
        m.duration_ms,
        &s::ago(m.received_unix_ms, app.now.unix_ms),
    );
    question_popup(f, app, body, &question, "delete", s::TITLE_DELETE);
}

/// A yes/no question in a warning popup: `yes` names what Confirm does; Back keeps things.
fn question_popup(f: &mut Frame, app: &App, body: Rect, question: &str, yes: &str, title: &str) {
    let lines = vec![
        Line::raw(""),
        Line::raw(format!("  {question}")),
        Line::raw(""),
        hints(
            app,
            Context::Confirm,
            &[(Cmd::Confirm, yes), (Cmd::Back, "keep")],
        ),
    ];
    let width = (question.chars().count() as u16 + 6).max(40);
    let area = popup(body, width, 6);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(popup_block(title, app.theme.warn())),
        area,
    );
}

fn remove_popup(f: &mut Frame, app: &App, body: Rect) {
    let Some(r) = &app.confirm_remove else {
        return;
    };
    let question = s::remove_question(&r.label);
    question_popup(f, app, body, &question, "remove", s::TITLE_REMOVE);
}

fn confirm_popup(f: &mut Frame, app: &App, body: Rect) {
    let t = &app.theme;
    let lines = vec![
        Line::raw(""),
        Line::raw(format!("  {}", s::CONFIRM_QUIT)),
        Line::raw(""),
        hints(
            app,
            Context::Confirm,
            &[(Cmd::Confirm, "hang up and quit"), (Cmd::Back, "stay")],
        ),
    ];
    let area = popup(body, 46, 6);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(popup_block(s::TITLE_CONFIRM, t.warn())),
        area,
    );
}

/// The help text: every binding of every context, then the `:` commands.
pub fn help_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = Vec::new();
    for ctx in Context::ALL {
        lines.push(Line::from(Span::styled(
            s::context_title(ctx),
            t.underline().patch(t.title()),
        )));
        for (cmd, keys) in app.keymap.entries(ctx) {
            let keys = keys
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let keys = if keys.is_empty() {
                "(unbound)".to_string()
            } else {
                keys
            };
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<14}"), t.key()),
                Span::raw(s::describe(ctx, cmd)),
            ]));
        }
        lines.push(Line::raw(""));
    }
    lines.push(Line::from(Span::styled(
        s::HELP_COMMANDS,
        t.underline().patch(t.title()),
    )));
    let usage = |names: &[&str], arg: &str| {
        if arg.is_empty() {
            format!(":{}", names[0])
        } else {
            format!(":{} {arg}", names[0])
        }
    };
    let width = COMMANDS
        .iter()
        .map(|(n, a)| usage(n, a).chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (names, arg) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<width$}", usage(names, arg)), t.key()),
            Span::raw(s::describe_line(names[0])),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(s::HELP_FIELDS, t.dim())));
    lines
}

fn help_popup(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let lines = help_lines(app);
    let area = popup(
        area,
        area.width.saturating_sub(4).min(110),
        area.height.saturating_sub(2),
    );
    let block = popup_block(s::TITLE_HELP, t.focused());
    let inner = block.inner(area);
    f.render_widget(Clear, area);
    f.render_widget(block, area);
    // Two columns when there is room: the key tables left, the commands right.
    let split = lines.iter().position(|l| {
        l.spans
            .first()
            .is_some_and(|s| s.content == s::HELP_COMMANDS)
    });
    let scroll = app
        .help
        .unwrap_or(0)
        .min((lines.len() as u16).saturating_sub(inner.height.max(1)));
    if inner.width >= 100
        && let Some(split) = split
    {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .spacing(2)
                .areas(inner);
        let (l, r) = lines.split_at(split);
        f.render_widget(
            Paragraph::new(Text::from(l.to_vec())).scroll((scroll, 0)),
            left,
        );
        f.render_widget(
            Paragraph::new(Text::from(r.to_vec())).scroll((scroll, 0)),
            right,
        );
        return;
    }
    f.render_widget(Paragraph::new(Text::from(lines)).scroll((scroll, 0)), inner);
}
