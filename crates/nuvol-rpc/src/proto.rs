//! Commands and the error strings serf's agent answers with.

/// The only IPC version serf defines.
pub const IPC_VERSION: i32 = 1;

/// Error strings of serf's `agent/ipc.go`, sent in `ResponseHeader::error`.
pub mod errors {
    pub const UNSUPPORTED_COMMAND: &str = "Unsupported command";
    pub const UNSUPPORTED_IPC_VERSION: &str = "Unsupported IPC version";
    pub const DUPLICATE_HANDSHAKE: &str = "Handshake already performed";
    pub const HANDSHAKE_REQUIRED: &str = "Handshake required";
    pub const MONITOR_EXISTS: &str = "Monitor already exists";
    pub const INVALID_FILTER: &str = "Invalid event filter";
    pub const STREAM_EXISTS: &str = "Stream with given sequence exists";
    pub const INVALID_QUERY_ID: &str = "No pending queries matching ID";
    pub const AUTH_REQUIRED: &str = "Authentication required";
    pub const INVALID_AUTH_TOKEN: &str = "Invalid authentication token";

    /// Errors after which serf's agent sends no body, whatever the command.
    pub fn has_no_body(error: &str) -> bool {
        matches!(
            error,
            AUTH_REQUIRED | HANDSHAKE_REQUIRED | UNSUPPORTED_COMMAND
        )
    }
}

/// Every RPC command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Handshake,
    Auth,
    Event,
    ForceLeave,
    Join,
    Members,
    MembersFiltered,
    Tags,
    Stream,
    Monitor,
    Stop,
    Leave,
    InstallKey,
    UseKey,
    RemoveKey,
    ListKeys,
    Query,
    Respond,
    Stats,
    GetCoordinate,
}

impl Command {
    pub const ALL: [Command; 20] = [
        Command::Handshake,
        Command::Auth,
        Command::Event,
        Command::ForceLeave,
        Command::Join,
        Command::Members,
        Command::MembersFiltered,
        Command::Tags,
        Command::Stream,
        Command::Monitor,
        Command::Stop,
        Command::Leave,
        Command::InstallKey,
        Command::UseKey,
        Command::RemoveKey,
        Command::ListKeys,
        Command::Query,
        Command::Respond,
        Command::Stats,
        Command::GetCoordinate,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Handshake => "handshake",
            Command::Auth => "auth",
            Command::Event => "event",
            Command::ForceLeave => "force-leave",
            Command::Join => "join",
            Command::Members => "members",
            Command::MembersFiltered => "members-filtered",
            Command::Tags => "tags",
            Command::Stream => "stream",
            Command::Monitor => "monitor",
            Command::Stop => "stop",
            Command::Leave => "leave",
            Command::InstallKey => "install-key",
            Command::UseKey => "use-key",
            Command::RemoveKey => "remove-key",
            Command::ListKeys => "list-keys",
            Command::Query => "query",
            Command::Respond => "respond",
            Command::Stats => "stats",
            Command::GetCoordinate => "get-coordinate",
        }
    }

    /// The command named `name` on the wire.
    pub fn parse(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether a request body follows the header.
    pub fn has_request_body(self) -> bool {
        !matches!(
            self,
            Command::Members | Command::Leave | Command::ListKeys | Command::Stats
        )
    }

    /// Whether the (first) response carries a body. Serf sends these bodies
    /// even along an error, except the errors of [`errors::has_no_body`].
    pub fn has_response_body(self) -> bool {
        matches!(
            self,
            Command::Join
                | Command::Members
                | Command::MembersFiltered
                | Command::InstallKey
                | Command::UseKey
                | Command::RemoveKey
                | Command::ListKeys
                | Command::Stats
                | Command::GetCoordinate
        )
    }

    /// Whether more records follow the first response under the same seq.
    pub fn is_stream(self) -> bool {
        matches!(self, Command::Stream | Command::Monitor | Command::Query)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()), Some(c));
        }
        assert_eq!(Command::parse("nope"), None);
    }
}
