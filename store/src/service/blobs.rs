//! Content-addressed component storage: `blobs/sha256/<hex>`, written crash-safely.
//!
//! An upload streams into `tmp/`, is hashed as it arrives, fsynced, renamed into place and
//! the directory fsynced; only then does the database learn of it. A crash at any point leaves
//! either a temporary file or an unreferenced blob, and [`Blobs::recover`] removes both at
//! startup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The component store on disk.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

/// An upload in progress: bytes go to a temporary file and into the hash. Dropped unfinished
/// (the client went away, the size cap was hit), its file is deleted.
#[derive(Debug)]
pub struct Upload {
    temp: tempfile::TempPath,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

/// A finished upload, hashed and on disk, not yet in place.
#[derive(Debug)]
pub struct Uploaded {
    temp: tempfile::TempPath,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// How many bytes.
    pub size: u64,
}

impl Blobs {
    /// The store under `root`, creating its folders.
    pub fn open(root: &Path) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(Blobs {
            root: root.to_owned(),
        })
    }

    /// Where the component with digest `sha256` lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Starts an upload.
    pub async fn upload(&self) -> std::io::Result<Upload> {
        let dir = self.root.join("tmp");
        let (file, temp) = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .suffix(".part")
                .tempfile_in(dir)
                .map(tempfile::NamedTempFile::into_parts)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Upload {
            temp,
            file: tokio::fs::File::from_std(file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Moves a finished upload into place under its digest and makes that durable.
    pub async fn commit(&self, uploaded: Uploaded) -> std::io::Result<PathBuf> {
        let target = self.path(&uploaded.sha256);
        let dir = self.root.join("sha256");
        let placed = target.clone();
        tokio::task::spawn_blocking(move || {
            uploaded.temp.persist(&placed).map_err(|e| e.error)?;
            std::fs::File::open(dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(target)
    }

    /// Removes temporaries and every blob no version refers to. Runs before the store serves.
    pub fn recover(&self, referenced: &HashSet<String>) -> std::io::Result<Recovered> {
        let mut recovered = Recovered::default();
        for entry in std::fs::read_dir(self.root.join("tmp"))? {
            std::fs::remove_file(entry?.path())?;
            recovered.temporaries += 1;
        }
        for entry in std::fs::read_dir(self.root.join("sha256"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                std::fs::remove_file(entry.path())?;
                recovered.orphans += 1;
            }
        }
        Ok(recovered)
    }
}

/// What [`Blobs::recover`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Unfinished uploads.
    pub temporaries: usize,
    /// Blobs written by a publish whose transaction never committed.
    pub orphans: usize,
}

impl Upload {
    /// Appends bytes.
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and fsyncs the file.
    pub async fn finish(mut self) -> std::io::Result<Uploaded> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(Uploaded {
            temp: self.temp,
            sha256: hex::encode(self.hasher.finalize()),
            size: self.size,
        })
    }
}

impl Uploaded {
    /// The bytes, for validation.
    pub async fn read(&self) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(&self.temp).await
    }
}
