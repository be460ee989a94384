//! The objects contract (`verdict::ports::contract::objects`: etags, `If-Match` reads and
//! deletes, missing objects, ranged opens, multipart) against the
//! S3 adapter on moto (shared's unit tests run it on the fake).

use verdict::adapters::ObjectStore;
use verdict::ports::contract::objects::{drain_blocking, objects_contract};
use verdict_integration::Stack;

#[tokio::test]
async fn the_s3_adapter_keeps_the_objects_contract() {
    let st = Stack::new().await;
    let objects = ObjectStore::new(st.s3.clone());
    // The S3 reader blocks: drained on a blocking thread, as the functions read it.
    let drain = |reader| async move {
        tokio::task::spawn_blocking(move || drain_blocking(reader))
            .await
            .expect("the reading thread")
    };
    objects_contract(&objects, &st.bucket, "contract", drain).await;
}
