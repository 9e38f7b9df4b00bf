//! The codec of every generated stub: tonic's prost codec with buffers sized
//! for this API's messages.
//!
//! tonic's default codec buffer is 8 KiB per call and per direction, and an
//! encoded response keeps its buffer alive until HTTP/2 has written it to
//! the socket: a server with thousands of streams waiting on slow readers
//! holds thousands of mostly empty 8 KiB buffers. A Recommend request is a
//! few bytes and its response a few hundred, so [`BUFFER_SIZE`] holds either
//! in one allocation; a larger message grows its buffer as it needs.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The initial size of each call's encode and decode buffers.
pub const BUFFER_SIZE: usize = 1024;

/// How many bytes of a server stream's ready messages are sent together
/// (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Prost encoding with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub struct CompactCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
