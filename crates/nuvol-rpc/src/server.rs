//! Server-side helpers: read a request header, then the body its command
//! calls for, typed; encode responses and stream records.
//!
//! Reading the header and the body are separate steps because serf's agent
//! decides between them (it answers `Authentication required` without
//! reading the body, for instance).
//!
//! ```ignore
//! let mut rd = RequestReader::new(read_half, MAX_REQUEST);
//! loop {
//!     let header = rd.read_header().await?;
//!     let Some(cmd) = Command::parse(&header.command) else {
//!         out.write_all(&encode_response(header.seq, errors::UNSUPPORTED_COMMAND, None)).await?;
//!         break;
//!     };
//!     match rd.read_body(cmd).await? {
//!         Request::Members => { /* ... */ }
//!         // ...
//!     }
//! }
//! ```

use crate::frame::{encode_value, FrameDecoder, FrameError};
use crate::proto::Command;
use crate::types::*;
use crate::value::{ReadError, ValueReader};
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A request body, typed by command.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Handshake(HandshakeRequest),
    Auth(AuthRequest),
    Event(EventRequest),
    ForceLeave(ForceLeaveRequest),
    Join(JoinRequest),
    Members,
    MembersFiltered(MembersFilteredRequest),
    Tags(TagsRequest),
    Stream(StreamRequest),
    Monitor(MonitorRequest),
    Stop(StopRequest),
    Leave,
    InstallKey(KeyRequest),
    UseKey(KeyRequest),
    RemoveKey(KeyRequest),
    ListKeys,
    Query(QueryRequest),
    Respond(RespondRequest),
    Stats,
    GetCoordinate(CoordinateRequest),
}

impl Request {
    /// Decode the body of `cmd` (`body` is ignored for commands without one).
    pub fn decode(cmd: Command, body: &Value) -> Result<Request, DecodeError> {
        Ok(match cmd {
            Command::Handshake => Request::Handshake(HandshakeRequest::from_value(body)?),
            Command::Auth => Request::Auth(AuthRequest::from_value(body)?),
            Command::Event => Request::Event(EventRequest::from_value(body)?),
            Command::ForceLeave => Request::ForceLeave(ForceLeaveRequest::from_value(body)?),
            Command::Join => Request::Join(JoinRequest::from_value(body)?),
            Command::Members => Request::Members,
            Command::MembersFiltered => {
                Request::MembersFiltered(MembersFilteredRequest::from_value(body)?)
            }
            Command::Tags => Request::Tags(TagsRequest::from_value(body)?),
            Command::Stream => Request::Stream(StreamRequest::from_value(body)?),
            Command::Monitor => Request::Monitor(MonitorRequest::from_value(body)?),
            Command::Stop => Request::Stop(StopRequest::from_value(body)?),
            Command::Leave => Request::Leave,
            Command::InstallKey => Request::InstallKey(KeyRequest::from_value(body)?),
            Command::UseKey => Request::UseKey(KeyRequest::from_value(body)?),
            Command::RemoveKey => Request::RemoveKey(KeyRequest::from_value(body)?),
            Command::ListKeys => Request::ListKeys,
            Command::Query => Request::Query(QueryRequest::from_value(body)?),
            Command::Respond => Request::Respond(RespondRequest::from_value(body)?),
            Command::Stats => Request::Stats,
            Command::GetCoordinate => Request::GetCoordinate(CoordinateRequest::from_value(body)?),
        })
    }

    /// The command this request belongs to.
    pub fn command(&self) -> Command {
        match self {
            Request::Handshake(_) => Command::Handshake,
            Request::Auth(_) => Command::Auth,
            Request::Event(_) => Command::Event,
            Request::ForceLeave(_) => Command::ForceLeave,
            Request::Join(_) => Command::Join,
            Request::Members => Command::Members,
            Request::MembersFiltered(_) => Command::MembersFiltered,
            Request::Tags(_) => Command::Tags,
            Request::Stream(_) => Command::Stream,
            Request::Monitor(_) => Command::Monitor,
            Request::Stop(_) => Command::Stop,
            Request::Leave => Command::Leave,
            Request::InstallKey(_) => Command::InstallKey,
            Request::UseKey(_) => Command::UseKey,
            Request::RemoveKey(_) => Command::RemoveKey,
            Request::ListKeys => Command::ListKeys,
            Request::Query(_) => Command::Query,
            Request::Respond(_) => Command::Respond,
            Request::Stats => Command::Stats,
            Request::GetCoordinate(_) => Command::GetCoordinate,
        }
    }

    /// The body value, if the command has one (what a client sends).
    pub fn body(&self) -> Option<Value> {
        match self {
            Request::Handshake(b) => Some(b.to_value()),
            Request::Auth(b) => Some(b.to_value()),
            Request::Event(b) => Some(b.to_value()),
            Request::ForceLeave(b) => Some(b.to_value()),
            Request::Join(b) => Some(b.to_value()),
            Request::MembersFiltered(b) => Some(b.to_value()),
            Request::Tags(b) => Some(b.to_value()),
            Request::Stream(b) => Some(b.to_value()),
            Request::Monitor(b) => Some(b.to_value()),
            Request::Stop(b) => Some(b.to_value()),
            Request::InstallKey(b) | Request::UseKey(b) | Request::RemoveKey(b) => {
                Some(b.to_value())
            }
            Request::Query(b) => Some(b.to_value()),
            Request::Respond(b) => Some(b.to_value()),
            Request::GetCoordinate(b) => Some(b.to_value()),
            Request::Members | Request::Leave | Request::ListKeys | Request::Stats => None,
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("bad request: {0}")]
    Decode(#[from] DecodeError),
}

impl From<FrameError> for ServerError {
    fn from(e: FrameError) -> Self {
        ServerError::Read(ReadError::Frame(e))
    }
}

/// Reads requests off a client's stream.
pub struct RequestReader<R> {
    values: ValueReader<R>,
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    /// `max` caps the size of one header or body.
    pub fn new(inner: R, max: usize) -> Self {
        RequestReader {
            values: ValueReader::new(inner, max),
        }
    }

    /// The next request header.
    pub async fn read_header(&mut self) -> Result<RequestHeader, ServerError> {
        let v = self.values.next().await?;
        Ok(RequestHeader::from_value(&v)?)
    }

    /// The body of `cmd` (read only if the command has one).
    pub async fn read_body(&mut self, cmd: Command) -> Result<Request, ServerError> {
        let body = if cmd.has_request_body() {
            self.values.next().await?
        } else {
            Value::Nil
        };
        Ok(Request::decode(cmd, &body)?)
    }

    /// The next raw value (e.g. to skip a body).
    pub async fn read_value(&mut self) -> Result<Value, ServerError> {
        Ok(self.values.next().await?)
    }
}

/// Sans-I/O request decoding: feed bytes, take headers and bodies.
pub struct RequestDecoder {
    frames: FrameDecoder,
}

impl RequestDecoder {
    pub fn new(max: usize) -> Self {
        RequestDecoder {
            frames: FrameDecoder::new(max),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.frames.feed(bytes);
    }

    /// The next header, `Ok(None)` if more bytes are needed.
    pub fn header(&mut self) -> Result<Option<RequestHeader>, ServerError> {
        match self.frames.decode()? {
            None => Ok(None),
            Some(v) => Ok(Some(RequestHeader::from_value(&v)?)),
        }
    }

    /// The body of `cmd`, `Ok(None)` if more bytes are needed.
    pub fn body(&mut self, cmd: Command) -> Result<Option<Request>, ServerError> {
        if !cmd.has_request_body() {
            return Ok(Some(Request::decode(cmd, &Value::Nil)?));
        }
        match self.frames.decode()? {
            None => Ok(None),
            Some(v) => Ok(Some(Request::decode(cmd, &v)?)),
        }
    }
}

/// Encode a response header and optional body as one write.
pub fn encode_response(seq: u64, error: &str, body: Option<&Value>) -> Vec<u8> {
    let mut out = encode_value(
        &ResponseHeader {
            seq,
            error: error.to_owned(),
        }
        .to_value(),
    );
    if let Some(b) = body {
        out.extend(encode_value(b));
    }
    out
}

/// Encode a response with a typed body.
pub fn encode_reply<B: Body>(seq: u64, error: &str, body: &B) -> Vec<u8> {
    encode_response(seq, error, Some(&body.to_value()))
}

/// Encode a request (header and body): what a client sends.
pub fn encode_request(seq: u64, req: &Request) -> Vec<u8> {
    let mut out = encode_value(
        &RequestHeader {
            command: req.command().as_str().to_owned(),
            seq,
        }
        .to_value(),
    );
    if let Some(b) = req.body() {
        out.extend(encode_value(&b));
    }
    out
}

/// Writes responses to a client.
pub struct ResponseWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> ResponseWriter<W> {
    pub fn new(inner: W) -> Self {
        ResponseWriter { inner }
    }

    /// Send a header and an optional body.
    pub async fn send(
        &mut self,
        seq: u64,
        error: &str,
        body: Option<&Value>,
    ) -> std::io::Result<()> {
        self.inner
            .write_all(&encode_response(seq, error, body))
            .await?;
        self.inner.flush().await
    }

    /// Send a header with a typed body.
    pub async fn reply<B: Body>(&mut self, seq: u64, error: &str, body: &B) -> std::io::Result<()> {
        self.send(seq, error, Some(&body.to_value())).await
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_value, Decoded};

    fn requests() -> Vec<Request> {
        vec![
            Request::Handshake(HandshakeRequest { version: 1 }),
            Request::Auth(AuthRequest {
                auth_key: "s".into(),
            }),
            Request::Event(EventRequest {
                name: "e".into(),
                payload: b"p".to_vec(),
                coalesce: true,
            }),
            Request::ForceLeave(ForceLeaveRequest {
                node: "n".into(),
                prune: true,
            }),
            Request::Join(JoinRequest {
                existing: vec!["a:1".into()],
                replay: false,
            }),
            Request::Members,
            Request::MembersFiltered(MembersFilteredRequest::default()),
            Request::Tags(TagsRequest::default()),
            Request::Stream(StreamRequest { filter: "*".into() }),
            Request::Monitor(MonitorRequest {
                log_level: "INFO".into(),
            }),
            Request::Stop(StopRequest { stop: 3 }),
            Request::Leave,
            Request::InstallKey(KeyRequest { key: "k".into() }),
            Request::UseKey(KeyRequest { key: "k".into() }),
            Request::RemoveKey(KeyRequest { key: "k".into() }),
            Request::ListKeys,
            Request::Query(QueryRequest {
                name: "q".into(),
                ..Default::default()
            }),
            Request::Respond(RespondRequest {
                id: 1,
                payload: vec![],
            }),
            Request::Stats,
            Request::GetCoordinate(CoordinateRequest { node: "n".into() }),
        ]
    }

    #[tokio::test]
    async fn every_request_reads_back_in_one_stream() {
        let reqs = requests();
        let mut bytes = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            bytes.extend(encode_request(i as u64 + 1, r));
        }
        let mut rd = RequestReader::new(&bytes[..], 4096);
        for (i, r) in reqs.iter().enumerate() {
            let h = rd.read_header().await.unwrap();
            assert_eq!(h.seq, i as u64 + 1);
            let cmd = Command::parse(&h.command).unwrap();
            assert_eq!(&rd.read_body(cmd).await.unwrap(), r);
        }
        assert_eq!(
            rd.read_header().await,
            Err(ServerError::Read(ReadError::Closed))
        );
    }

    #[test]
    fn sans_io_decoder_byte_by_byte() {
        let reqs = requests();
        let mut bytes = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            bytes.extend(encode_request(i as u64, r));
        }
        let mut d = RequestDecoder::new(4096);
        let mut got = Vec::new();
        let mut cmd: Option<Command> = None;
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            loop {
                match cmd {
                    None => match d.header().unwrap() {
                        Some(h) => cmd = Command::parse(&h.command),
                        None => break,
                    },
                    Some(c) => match d.body(c).unwrap() {
                        Some(r) => {
                            got.push(r);
                            cmd = None;
                        }
                        None => break,
                    },
                }
            }
        }
        assert_eq!(got, reqs);
    }

    #[tokio::test]
    async fn bad_bodies_are_errors_not_panics() {
        let mut bytes = encode_request(1, &Request::Event(EventRequest::default()));
        // Replace the body by a number.
        let hdr_len = match decode_value(&bytes, 100).unwrap() {
            Decoded::Complete { consumed, .. } => consumed,
            Decoded::NeedMore => unreachable!(),
        };
        bytes.truncate(hdr_len);
        bytes.push(0x05);
        let mut rd = RequestReader::new(&bytes[..], 4096);
        let h = rd.read_header().await.unwrap();
        let cmd = Command::parse(&h.command).unwrap();
        assert!(matches!(
            rd.read_body(cmd).await,
            Err(ServerError::Decode(DecodeError::NotAMap { .. }))
        ));
        // A header that is not a map.
        let mut rd = RequestReader::new(&[0x05u8][..], 4096);
        assert!(matches!(
            rd.read_header().await,
            Err(ServerError::Decode(_))
        ));
    }

    #[test]
    fn responses_encode_header_then_body() {
        let body = JoinResponse { num: 2 };
        let bytes = encode_reply(5, "", &body);
        let Ok(Decoded::Complete { value, consumed }) = decode_value(&bytes, 100) else {
            panic!()
        };
        assert_eq!(
            ResponseHeader::from_value(&value).unwrap(),
            ResponseHeader {
                seq: 5,
                error: String::new()
            }
        );
        let Ok(Decoded::Complete { value, .. }) = decode_value(&bytes[consumed..], 100) else {
            panic!()
        };
        assert_eq!(JoinResponse::from_value(&value).unwrap(), body);
    }
}
