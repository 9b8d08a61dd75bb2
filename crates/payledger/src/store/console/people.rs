//! Console queries of the people pages.

macro_rules! console_people_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {}
    };
}
pub(crate) use console_people_queries;
