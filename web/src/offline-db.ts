// IndexedDB in a few promises, shared by the page and the service worker (which has no
// localStorage): one database per purpose, each a set of plain key-value stores.
//
//   tidings-push     kv: what the service worker needs between pushes (the API URL, the
//                    last Email state seen per account); no mail content
//   tidings-offline  answers, queue, kv: offline reading (web/src/offline.ts); deleted
//                    whole when the user turns offline reading off

export const PUSH_DB = "tidings-push";
export const OFFLINE_DB = "tidings-offline";

const STORES: Record<string, string[]> = {
  [PUSH_DB]: ["kv"],
  [OFFLINE_DB]: ["answers", "queue", "kv"],
};

function done<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error("IndexedDB request failed"));
  });
}

export class Db {
  private constructor(private db: IDBDatabase) {}

  static open(name: string): Promise<Db> {
    return new Promise((resolve, reject) => {
      const r = indexedDB.open(name, 1);
      r.onupgradeneeded = () => {
        for (const s of STORES[name] ?? ["kv"]) if (!r.result.objectStoreNames.contains(s)) r.result.createObjectStore(s);
      };
      r.onsuccess = () => resolve(new Db(r.result));
      r.onerror = () => reject(r.error ?? new Error(`IndexedDB ${name} cannot be opened`));
      r.onblocked = () => reject(new Error(`IndexedDB ${name} is blocked by another tab`));
    });
  }

  static remove(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const r = indexedDB.deleteDatabase(name);
      r.onsuccess = () => resolve();
      r.onerror = () => reject(r.error ?? new Error(`IndexedDB ${name} cannot be deleted`));
      // Another tab holds it open: it is deleted once that tab closes it.
      r.onblocked = () => resolve();
    });
  }

  get<T>(store: string, key: IDBValidKey): Promise<T | undefined> {
    return done(this.db.transaction(store).objectStore(store).get(key)) as Promise<T | undefined>;
  }

  async put(store: string, key: IDBValidKey, value: unknown): Promise<void> {
    await done(this.db.transaction(store, "readwrite").objectStore(store).put(value, key));
  }

  async putMany(store: string, entries: [IDBValidKey, unknown][]): Promise<void> {
    if (!entries.length) return;
    const tx = this.db.transaction(store, "readwrite");
    const s = tx.objectStore(store);
    for (const [k, v] of entries) s.put(v, k);
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB write failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB write aborted"));
    });
  }

  async delete(store: string, key: IDBValidKey): Promise<void> {
    await done(this.db.transaction(store, "readwrite").objectStore(store).delete(key));
  }

  keys(store: string): Promise<IDBValidKey[]> {
    return done(this.db.transaction(store).objectStore(store).getAllKeys());
  }

  count(store: string): Promise<number> {
    return done(this.db.transaction(store).objectStore(store).count());
  }

  close(): void {
    this.db.close();
  }
}
