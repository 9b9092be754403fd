//! Building blocks shared by the example programs: the echo service, the command line, and
//! signal handling. Integration tests reuse [`echo::Echo`] as the ustack-side server.

pub mod cli;
pub mod demo;
pub mod echo;
pub mod signal;
