//! The web app's own layers. The stack is assembled, in order, in
//! `routes::router`; the client-side layers are in `client`.

pub mod errors;
pub mod observe;
