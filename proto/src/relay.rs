//! The connection state machine and the public API: the first half of
//! `impl Relay`; the stanza path, the second, is in `stanza/`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use data_encoding::HEXLOWER;
use sha1::{Digest, Sha1};

use crate::action::{Action, DisconnectReason, OpId, StoreOutcome};
use crate::bans::Bans;
use crate::cache::{GenMap, Keyed};
use crate::config::{Config, ConfigError, KeepaliveMode, WallClock};
use crate::element::Element;
use crate::framer::{Frame, FrameError, Framer};
use crate::health::StoreHealth;
use crate::idmap::IdMap;
use crate::ns;
use crate::pending::{Pending, Settled};
use crate::pseudonym::{Local, Pseudonymizer};
use crate::rate::Limiter;
use crate::seal::StoreCodec;
use crate::stats::{DropReason, RejectReason, Stats};
use crate::writer::Writer;

/// A mapping the relay knows: pseudonym localpart → verified identity.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// Shared, so that each relayed message takes a reference, not a copy.
    pub(crate) identity: Arc<str>,
    /// When this relay last wrote it to the store; `None`: found there.
    pub(crate) written: Option<Written>,
}

/// A write of a mapping by this relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) at: Instant,
    /// The store's failure count then: a failure since may have lost it.
    pub(crate) failures_seen: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection.
    Idle,
    /// Header sent; waiting for the server's.
    AwaitHeader { deadline: Instant },
    /// Handshake sent; waiting for `<handshake/>`.
    AwaitHandshake { deadline: Instant },
    /// Relaying.
    Online {
        since: Instant,
        /// Last input; in whitespace mode also the last keepalive sent.
        last_rx: Instant,
        ping_deadline: Option<Instant>,
    },
    /// A stop was requested: waiting stanzas get until `deadline`.
    Draining { deadline: Instant },
    /// Our `</stream:stream>` is out; waiting for the server's.
    Closing { deadline: Instant },
}

/// The relay core for one component domain; it lives across reconnects
/// (caches, id map and counters survive, per-connection state does not).
pub struct Relay {
    pub(crate) cfg: Config,
    pub(crate) pseudo: Pseudonymizer,
    pub(crate) codec: StoreCodec,
    pub(crate) writer: Writer,
    pub(crate) out: BytesMut,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) stats: Stats,
    pub(crate) known: GenMap<String, Known>,
    pub(crate) forward: GenMap<String, Local>,
    pub(crate) ids: IdMap,
    pub(crate) pending: Pending,
    pub(crate) limiter: Limiter,
    pub(crate) bans: Bans,
    state: State,
    pub(crate) framer: Option<Framer>,
    ping_seq: u64,
    /// Store operations that failed or timed out so far. The store may
    /// have lost what it held (a memcached restart), so a write made before
    /// the latest failure no longer counts as written.
    pub(crate) store_failures: u64,
    /// What the log has said about the store.
    pub(crate) health: StoreHealth,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("domain", &self.cfg.domain)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay that is not connected yet.
    pub fn new(config: Config) -> Result<Relay, ConfigError> {
        config.validate()?;
        let key = config.id_key;
        let codec = StoreCodec::new(config.encrypt);
        Ok(Relay {
            pseudo: Pseudonymizer::new(&config.secret),
            bans: Bans::new(&codec, &config.domain),
            codec,
            writer: Writer::new(&config.domain, config.limits.max_stanza_bytes),
            out: BytesMut::with_capacity(16 * 1024),
            actions: VecDeque::new(),
            stats: Stats::default(),
            known: GenMap::new(config.cache_capacity, Keyed::new(&key, 3)),
            forward: GenMap::new(config.cache_capacity, Keyed::new(&key, 4)),
            ids: IdMap::new(&config.secret, &key, config.id_map_capacity),
            pending: Pending::new(Keyed::new(&key, 5)),
            limiter: Limiter::new(config.rates),
            state: State::Idle,
            framer: None,
            ping_seq: 0,
            store_failures: 0,
            health: StoreHealth::default(),
            cfg: config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A new reading of the wall clock: ids issued from now on are dated
    /// by it.
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.cfg.wall_clock = Some(clock);
    }

    /// Unix seconds at `now`, by the runtime's wall clock.
    pub(crate) fn unix(&self, now: Instant) -> u64 {
        // `validate` requires the clock.
        self.cfg.wall_clock.map_or(0, |w| w.unix_at(now))
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the handshake succeeded and the relay is serving.
    pub fn is_online(&self) -> bool {
        matches!(self.state, State::Online { .. })
    }

    /// Whether no connection is in progress (before the first, after a
    /// `Disconnect`).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// A TCP connection to the server is up: queue the stream header. Any
    /// earlier connection state is discarded.
    pub fn handle_connected(&mut self, now: Instant) {
        self.reset_connection();
        self.framer = Some(Framer::new(self.cfg.limits.clone()));
        self.writer.header(&mut self.out);
        self.state = State::AwaitHeader {
            deadline: now + self.cfg.handshake_timeout,
        };
    }

    /// Bytes read from the server, in order, in chunks of any size.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        let Some(framer) = self.framer.as_mut() else {
            return;
        };
        framer.feed(data);
        if let State::Online {
            last_rx,
            ping_deadline,
            ..
        } = &mut self.state
        {
            *last_rx = now;
            *ping_deadline = None;
        }
        while !self.is_idle() {
            let Some(framer) = self.framer.as_mut() else {
                return;
            };
            match framer.poll() {
                Ok(Some(frame)) => self.on_frame(frame, now),
                Ok(None) => return,
                Err(e) => return self.bad_input(&e),
            }
        }
    }

    /// The socket reached EOF or failed. Safe to call in any state.
    pub fn handle_closed(&mut self, _now: Instant) {
        match self.state {
            State::Idle => {}
            State::Draining { .. } | State::Closing { .. } => {
                self.disconnect(DisconnectReason::Shutdown)
            }
            _ => self.disconnect(DisconnectReason::Closed),
        }
    }

    /// Time has passed; call at [`Relay::poll_timeout`]. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        for op in self.pending.expired(now) {
            self.stats.store_errors += 1;
            let refused = self.stats.rejected_for(RejectReason::InternalServerError);
            self.health.failed(&"no answer in time", refused, now);
            self.settle(op, Settled::Failed, now);
        }
        self.health.poisoned(self.stats.poisoned, now);
        if self.is_online() {
            self.bans_timeout(now);
        }
        match self.state {
            State::Idle => {}
            State::AwaitHeader { deadline } if now >= deadline => {
                self.disconnect(DisconnectReason::Timeout("the stream header"))
            }
            State::AwaitHandshake { deadline } if now >= deadline => {
                self.disconnect(DisconnectReason::Timeout("the handshake"))
            }
            State::Online {
                last_rx,
                ping_deadline,
                since,
            } => match ping_deadline {
                Some(d) if now >= d => {
                    self.disconnect(DisconnectReason::Timeout("a keepalive ping"))
                }
                None if now >= last_rx + self.cfg.keepalive => match self.cfg.keepalive_mode {
                    KeepaliveMode::Ping => {
                        self.send_ping();
                        self.state = State::Online {
                            since,
                            last_rx,
                            ping_deadline: Some(now + self.cfg.keepalive),
                        };
                    }
                    KeepaliveMode::Whitespace => {
                        // Whitespace between stanzas is allowed on the
                        // stream; nothing answers it, so the next one is
                        // due one interval from now.
                        self.out.extend_from_slice(b" ");
                        self.state = State::Online {
                            since,
                            last_rx: now,
                            ping_deadline: None,
                        };
                    }
                },
                _ => {}
            },
            State::Draining { deadline } if self.pending.is_empty() || now >= deadline => {
                self.begin_close(now)
            }
            State::Closing { deadline } if now >= deadline => {
                self.disconnect(DisconnectReason::Shutdown)
            }
            _ => {}
        }
    }

    /// The outcome of an [`Action::Get`] or [`Action::Put`]. An answer to an
    /// operation that timed out or went with its connection settles no
    /// stanza; a late failure still counts against the store.
    pub fn handle_store(&mut self, op: OpId, outcome: StoreOutcome, now: Instant) {
        if self.bans_answer(op, &outcome, now) {
            return;
        }
        let settled = self.settle_outcome(op, outcome, now);
        self.settle(op, settled, now);
        if matches!(self.state, State::Draining { .. }) && self.pending.is_empty() {
            self.begin_close(now);
        }
    }

    /// Begin a graceful stop: stop taking new stanzas, finish or answer the
    /// waiting ones, close the stream and wait briefly for the server's close.
    /// Ends with `Action::Disconnect(Shutdown)`.
    pub fn shutdown(&mut self, now: Instant) {
        self.bans_offline();
        match self.state {
            State::Idle => self
                .actions
                .push_back(Action::Disconnect(DisconnectReason::Shutdown)),
            State::AwaitHeader { .. } | State::AwaitHandshake { .. } => self.begin_close(now),
            State::Online { .. } => {
                self.state = State::Draining {
                    deadline: now + self.cfg.close_timeout,
                };
                if self.pending.is_empty() {
                    self.begin_close(now);
                }
            }
            State::Draining { .. } | State::Closing { .. } => {}
        }
    }

    /// All bytes to write to the server now, in order; `None` when there are none.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next action for the runtime.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Relay::handle_timeout`] next; `None` when nothing is timed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let store = self.pending.next_deadline();
        let bans = self.is_online().then(|| self.bans.deadline()).flatten();
        let store = match (store, bans) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let conn = match self.state {
            State::Idle => None,
            State::AwaitHeader { deadline }
            | State::AwaitHandshake { deadline }
            | State::Draining { deadline }
            | State::Closing { deadline } => Some(deadline),
            State::Online {
                last_rx,
                ping_deadline,
                ..
            } => Some(ping_deadline.unwrap_or(last_rx + self.cfg.keepalive)),
        };
        match (store, conn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stanzas waiting on the store.
    pub fn pending_stanzas(&self) -> usize {
        self.pending.len()
    }

    /// How long the current connection has been online, if it is.
    pub fn online_for(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Online { since, .. } => Some(now.saturating_duration_since(since)),
            _ => None,
        }
    }

    /// Bytes the framer holds for an unfinished stanza; at most
    /// `max_stanza_bytes` plus 16 KiB, the largest stream header, whose
    /// namespace names a stanza's record may copy. For tests and fuzzing,
    /// which check that bound.
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.framer.as_ref().map_or(0, Framer::buffered)
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        match (frame, self.state) {
            (Frame::Header { is_stream, id }, State::AwaitHeader { deadline }) => {
                if !is_stream {
                    self.writer.stream_error(&mut self.out, "invalid-namespace");
                    return self.disconnect(DisconnectReason::BadInput(
                        "the root is not a stream".into(),
                    ));
                }
                let Some(id) = id else {
                    self.writer.close(&mut self.out);
                    return self.disconnect(DisconnectReason::StreamError(
                        "stream header without id".into(),
                    ));
                };
                let mut h = Sha1::new();
                h.update(id.as_bytes());
                h.update(self.cfg.password.as_bytes());
                let hex = HEXLOWER.encode(&h.finalize());
                self.writer.handshake(&mut self.out, &hex);
                self.state = State::AwaitHandshake { deadline };
            }
            (Frame::Header { .. }, _) => {}
            (Frame::Stanza(tree), state) => {
                let el = tree.root();
                if el.is(ns::STREAMS, "error") {
                    return self.stream_error(el);
                }
                match state {
                    State::AwaitHandshake { .. }
                        if el.name() == "handshake" && ns::is_stanza_ns(el.ns()) =>
                    {
                        self.stats.sessions += 1;
                        self.state = State::Online {
                            since: now,
                            last_rx: now,
                            ping_deadline: None,
                        };
                        self.actions.push_back(Action::Online);
                        self.bans_online(now);
                    }
                    State::Online { .. } => {
                        self.stats.stanzas_in += 1;
                        self.handle_stanza(tree, now);
                    }
                    _ => self.stats.drop(DropReason::NotOnline),
                }
            }
            (Frame::Skipped(head), State::Online { .. }) => {
                self.stats.oversized += 1;
                if let Some(head) = head {
                    self.reply_error(head.root(), "modify", RejectReason::PolicyViolation);
                }
            }
            (Frame::Skipped(_), _) => self.stats.oversized += 1,
            (Frame::End, State::Closing { .. } | State::Draining { .. }) => {
                self.disconnect(DisconnectReason::Shutdown)
            }
            (Frame::End, _) => {
                self.writer.close(&mut self.out);
                self.disconnect(DisconnectReason::Closed);
            }
        }
    }

    fn stream_error(&mut self, el: Element<'_>) {
        let cond = el
            .elements()
            .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "undefined-condition".to_owned());
        let reason = match cond.as_str() {
            "not-authorized" => DisconnectReason::NotAuthorized,
            "host-unknown" => DisconnectReason::HostUnknown,
            "conflict" => DisconnectReason::Conflict,
            _ => DisconnectReason::StreamError(cond),
        };
        if !self.sent_close() {
            self.writer.close(&mut self.out);
        }
        self.disconnect(reason);
    }

    fn bad_input(&mut self, e: &FrameError) {
        log::warn!("closing the stream: the server sent unparsable XML ({e})");
        if !self.sent_close() {
            self.writer.stream_error(&mut self.out, e.condition());
        }
        self.disconnect(DisconnectReason::BadInput(e.to_string()));
    }

    /// Our `</stream:stream>` is out: nothing may follow it on this stream.
    fn sent_close(&self) -> bool {
        matches!(self.state, State::Closing { .. })
    }

    fn send_ping(&mut self) {
        self.ping_seq += 1;
        let id = format!("keepalive-{}", self.ping_seq);
        let target = self.cfg.ping_target().to_owned();
        let mut s = self.writer.stanza(&mut self.out, "iq");
        s.to(&target)
            .from(None, None)
            .attr("type", "get")
            .attr("id", &id);
        s.child("ping", Some(ns::PING));
        let _ = s.finish();
    }

    /// Answer what still waits, then send our close.
    fn begin_close(&mut self, now: Instant) {
        for job in self.pending.drain() {
            self.stats.store_errors += 1;
            self.reply_error(job.stanza.root(), "wait", RejectReason::RemoteServerTimeout);
        }
        self.writer.close(&mut self.out);
        self.state = State::Closing {
            deadline: now + self.cfg.close_timeout,
        };
    }

    fn reset_connection(&mut self) {
        self.bans_offline();
        self.framer = None;
        self.pending.clear();
        self.out.clear();
    }

    fn disconnect(&mut self, reason: DisconnectReason) {
        self.bans_offline();
        self.framer = None;
        self.pending.clear();
        self.state = State::Idle;
        self.actions.push_back(Action::Disconnect(reason));
    }
}
