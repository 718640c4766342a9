//! `strata build`'s reading of its inputs: the Dockerfile's stages
//! (`plan`), the context and COPY's tar (`context`), ADD's downloads
//! (`fetch`), and docker's path patterns (`pattern`). `commands::build`
//! carries the steps out.

pub mod context;
pub mod fetch;
pub mod in_context;
pub mod pattern;
pub mod plan;
