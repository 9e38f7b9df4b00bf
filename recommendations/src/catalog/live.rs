//! The catalog being served, swapped whole by a reload
//! ([`service_kit::reload::Live`]): each call takes the catalog current when
//! it starts and keeps it to its end (a ListBooks stream included), so no
//! call sees two catalogs, and the old one is freed when its last call ends.

use super::Catalog;

/// The current catalog, shared by every call. Cloning shares it.
pub type LiveCatalog = service_kit::reload::Live<Catalog>;
