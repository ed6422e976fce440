/**
 * The open watches of RecordStore.watch, grouped by record: whom to wake when a record settles,
 * and when the first and the last watch of a record come and go (the Redis store subscribes to
 * the record's channel on the first and unsubscribes on the last: one SUBSCRIBE per record, not
 * one per waiting request). Both stores use it.
 */
import type { RecordWatch } from '../engine/ports';

export interface OpenedWatch {
  readonly watch: RecordWatch;
  /** True when no other watch of this record was open: the caller sets up delivery. */
  readonly first: boolean;
}

export class WatchRegistry {
  private readonly groups = new Map<string, Set<() => void>>();

  /**
   * Opens a watch of the record named `name`. `onLast` runs when the last open watch of that
   * record closes (not when the registry is cleared: the caller is shutting down then).
   */
  open(name: string, onLast: () => void = () => undefined): OpenedWatch {
    let group = this.groups.get(name);
    const first = group === undefined;
    if (group === undefined) {
      group = new Set();
      this.groups.set(name, group);
    }
    const members = group;
    let wake: () => void = () => undefined;
    const changed = new Promise<void>((resolve) => {
      wake = resolve;
    });
    members.add(wake);
    let open = true;
    const close = (): void => {
      if (!open) return;
      open = false;
      members.delete(wake);
      // The group may already be a new one (this record was cleared and watched again): only the
      // group this watch joined is this watch's to end.
      if (members.size === 0 && this.groups.get(name) === members) {
        this.groups.delete(name);
        onLast();
      }
    };
    return { watch: { changed, close }, first };
  }

  /** Wakes every open watch of the record `name`; they stay open until closed. */
  notify(name: string): void {
    for (const wake of this.groups.get(name) ?? []) wake();
  }

  /** Wakes every open watch: something may have changed that no notice will report. */
  notifyAll(): void {
    for (const group of this.groups.values()) for (const wake of group) wake();
  }

  /** Wakes and forgets every open watch, for a closing store. */
  clear(): void {
    this.notifyAll();
    this.groups.clear();
  }

  /** The records with at least one open watch. */
  names(): IterableIterator<string> {
    return this.groups.keys();
  }

  has(name: string): boolean {
    return this.groups.has(name);
  }
}
