//! `strata build`'s reading of its inputs: the Dockerfile's stages
//! (`plan`), the context and COPY's tar (`context`), and docker's path
//! patterns (`pattern`). `commands::build` carries the steps out.

pub mod context;
pub mod pattern;
pub mod plan;
