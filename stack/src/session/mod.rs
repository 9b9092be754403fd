//! The session layer, Getty-style: a [`Codec`](codec::Codec) cuts a byte stream into
//! packages, an [`EventListener`] handles them, and an [`Engine`] runs every session of a
//! stack from its readiness events and one [`TimerWheel`](timer::TimerWheel).
//!
//! ```text
//! Stack events ─▶ Engine ─▶ endpoint (TCP server / client, UDP, UDP client)
//!                   │          └─▶ Protocol: Service<Codec, Listener> (inline)
//!                   │                        Pooled<Codec, Listener> (task pool, std)
//!                   │                        WsServer / WsClient (ustack::ws)
//!                   └─ one timer wheel: cron, idle, read and write timeouts
//! ```
//!
//! Everything here is sans-IO: the engine is handed the stack and the time, and never
//! touches a clock or a device, so the same sessions run on firmware, in tests and under a
//! fuzzer. An idle session owns no buffer: decoding peeks at the socket's receive queue
//! through a shared scratch area, and what is not yet a whole package stays in the socket.

// Without the `udp` feature a session's socket is always TCP, and the matches written for
// both kinds become irrefutable.
#![cfg_attr(not(feature = "udp"), allow(irrefutable_let_patterns))]

mod bufs;
pub mod codec;
mod ctx;
mod endpoint;
mod engine;
mod error;
#[cfg(feature = "std")]
mod handle;
mod info;
mod io;
mod listener;
#[cfg(feature = "std")]
mod pooled;
mod state;
#[cfg(feature = "std")]
pub mod tasks;
pub mod timer;

pub use ctx::{Ctx, Session};
pub(crate) use ctx::{Framed, Framer};
pub use endpoint::{
    session_tcp, Backoff, ClientOptions, EndpointId, EndpointStatus, ProtocolRef, ServerOptions,
    WhenFull, MAX_ENDPOINTS,
};
pub use engine::{Engine, EngineStats, EngineStorage, DEFAULT_DRAIN_TIMEOUT, DEFAULT_POOL_BYTES};
pub use error::{Reject, SessionError};
#[cfg(feature = "std")]
pub use handle::{SessionHandle, COMMAND_QUEUE};
pub use info::{
    Kind, Limits, SessionId, SessionInfo, SessionStats, DEFAULT_MAX_MSG_LEN,
    DEFAULT_MAX_WRITE_QUEUE,
};
pub use listener::{decode_all, EventListener, Input, Next, Protocol, Service};
#[cfg(feature = "std")]
pub use pooled::{Pooled, Task};
pub use state::SessionSlot;
