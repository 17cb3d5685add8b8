//! The code generated from `proto/` by `build.rs`, in modules nested as the packages are
//! (the generated code names other packages by relative paths).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// ZITADEL's packages.
pub mod zitadel {
    /// `zitadel.v1`: object details, list paging.
    pub mod v1 {
        tonic::include_proto!("zitadel.v1");
    }

    /// `zitadel.settings.v1`: the secret generator messages and types.
    pub mod settings {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("zitadel.settings.v1");
        }
    }

    /// `zitadel.admin.v1`: the AdminService.
    pub mod admin {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("zitadel.admin.v1");
        }
    }
}

/// secretgen's own packages.
pub mod secretgen {
    /// `secretgen.v1`: the CodeService.
    pub mod v1 {
        tonic::include_proto!("secretgen.v1");
    }
}

/// Every file of `proto/` and its imports, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/secretgen_descriptor.bin"));
