import { expect } from 'chai'
import { FairQueue, QueueGroup, type QueueEntry } from '../../packages/core/src/dispatch/fair-queue.js'

// Unit tests of the pool's queue as plain data: no timers, no signals, no pool. Every expectation is an
// order or a count, so a change to the round-robin, the age order or the unlinking fails here first.

class Entry implements QueueEntry<Entry> {
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  agePrev: Entry | undefined = undefined
  ageNext: Entry | undefined = undefined
  constructor(
    readonly group: QueueGroup<Entry>,
    readonly name: string,
  ) {}
}

/** Groups named by letter; `push(q, 'A1 B1 A2')` queues entries named so, in that order. */
function setup(maxPerGroup = Infinity, byAge = false) {
  const queue = new FairQueue<Entry>(maxPerGroup, byAge)
  const groups = new Map<string, QueueGroup<Entry>>()
  const entries = new Map<string, Entry>()
  const group = (letter: string) => {
    let g = groups.get(letter)
    if (g === undefined) groups.set(letter, (g = new QueueGroup<Entry>()))
    return g
  }
  const push = (names: string) => {
    for (const name of names.split(' ')) {
      const entry = new Entry(group(name[0]!), name)
      entries.set(name, entry)
      queue.push(entry)
    }
  }
  const takeAll = () => {
    const taken: string[] = []
    for (let e = queue.take(); e !== undefined; e = queue.take()) taken.push(e.name)
    return taken
  }
  /** The queued entries of a group, walking its links both ways (a broken link shows as a mismatch). */
  const queuedOf = (letter: string) => {
    const g = group(letter)
    const forward: string[] = []
    for (let e = g.head; e !== undefined; e = e.next) forward.push(e.name)
    const backward: string[] = []
    for (let e = g.tail; e !== undefined; e = e.prev) backward.push(e.name)
    expect(backward.reverse(), `links of group ${letter}`).to.deep.equal(forward)
    expect(g.queued, `count of group ${letter}`).to.equal(forward.length)
    return forward
  }
  /** Names in age order, by repeatedly removing the oldest (consumes the queue). */
  const drainByAge = () => {
    const names: string[] = []
    for (let e = queue.oldest; e !== undefined; e = queue.oldest) {
      queue.remove(e)
      names.push(e.name)
    }
    return names
  }
  return { queue, group, entries, push, takeAll, queuedOf, drainByAge, get: (name: string) => entries.get(name)! }
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items]
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]))
}

describe('FairQueue', () => {
  describe('take()', () => {
    it('serves groups round-robin, one entry per group per turn, each group first-in first-out', () => {
      const { queue, push, takeAll } = setup()
      push('A1 A2 A3 A4 B1 B2 C1')
      expect(queue.queued).to.equal(7)
      expect(takeAll()).to.deep.equal(['A1', 'B1', 'C1', 'A2', 'B2', 'A3', 'A4'])
      expect(queue.queued).to.equal(0)
      expect(queue.running).to.equal(7)
      expect(queue.ready).to.equal(false)
    })

    it('puts a group that starts queueing mid-round last in the round', () => {
      const { queue, push, takeAll } = setup()
      push('A1 A2 B1 B2')
      expect(queue.take()!.name).to.equal('A1')
      push('C1 C2')
      // The round from the cursor is B, A, then the newcomer C.
      expect(takeAll()).to.deep.equal(['B1', 'A2', 'C1', 'B2', 'C2'])
    })

    it('lets one request with many entries take only its share while others wait', () => {
      const { push, takeAll } = setup()
      push('A1 A2 A3 A4 A5 A6 A7 A8 B1 C1')
      expect(takeAll().slice(0, 3).sort()).to.deep.equal(['A1', 'B1', 'C1'])
    })

    it('returns undefined on an empty queue', () => {
      const { queue } = setup()
      expect(queue.take()).to.equal(undefined)
      expect(queue.ready).to.equal(false)
    })
  })

  describe('with maxPerGroup', () => {
    it('skips a group at its cap and brings it back into the round when one of its entries finishes', () => {
      const { queue, push, get } = setup(1)
      push('A1 A2 A3 B1')
      expect(queue.take()!.name).to.equal('A1')
      expect(queue.take()!.name).to.equal('B1')
      // A2 is queued, but A has 1 running: nothing may start.
      expect(queue.ready).to.equal(false)
      expect(queue.take()).to.equal(undefined)
      queue.finish(get('A1'))
      expect(queue.ready).to.equal(true)
      expect(queue.take()!.name).to.equal('A2')
      expect(queue.take()).to.equal(undefined)
      queue.finish(get('A2'))
      expect(queue.take()!.name).to.equal('A3')
      expect(queue.running).to.equal(2)
    })

    it('counts an entry started without queueing against its group’s cap', () => {
      const { queue, push, group } = setup(2)
      const direct = new Entry(group('A'), 'A0')
      queue.start(direct)
      push('A1 A2 B1')
      expect(queue.take()!.name).to.equal('A1')
      expect(queue.take()!.name).to.equal('B1')
      expect(queue.take()).to.equal(undefined)
      queue.finish(direct)
      expect(queue.take()!.name).to.equal('A2')
    })
  })

  describe('remove()', () => {
    it('unlinks any subset of entries in any order, keeping both the group order and the age order', () => {
      const names = ['A1', 'B1', 'A2', 'A3', 'B2']
      for (const removed of [['A1'], ['A2'], ['A3'], ['A1', 'A3'], ['A2', 'B1'], ['A1', 'A2', 'A3']]) {
        for (const order of permutations(removed)) {
          const { queue, push, get, queuedOf, drainByAge } = setup(Infinity, true)
          push(names.join(' '))
          for (const name of order) queue.remove(get(name))
          const left = names.filter((n) => !removed.includes(n))
          expect(queue.queued, `after removing ${order}`).to.equal(left.length)
          expect(queuedOf('A'), `after removing ${order}`).to.deep.equal(left.filter((n) => n[0] === 'A'))
          expect(queuedOf('B'), `after removing ${order}`).to.deep.equal(left.filter((n) => n[0] === 'B'))
          expect(drainByAge(), `after removing ${order}`).to.deep.equal(left)
          expect(queue.queued).to.equal(0)
          expect(queue.ready).to.equal(false)
        }
      }
    })

    it('takes a group whose last entry left out of the round, and the turn passes to the next group', () => {
      const { queue, push, get, takeAll } = setup()
      push('A1 B1 C1 C2')
      queue.remove(get('A1'))
      expect(takeAll()).to.deep.equal(['B1', 'C1', 'C2'])
      push('A2 B2')
      expect(queue.take()!.name).to.equal('A2')
      queue.remove(get('B2'))
      expect(queue.take()).to.equal(undefined)
      expect(queue.running).to.equal(4)
    })
  })

  describe('oldest', () => {
    it('is the entry queued longest, across groups, and follows take() and remove()', () => {
      const { queue, push, get } = setup(Infinity, true)
      push('A1 B1 A2 C1')
      expect(queue.oldest!.name).to.equal('A1')
      queue.remove(get('A1'))
      expect(queue.oldest!.name).to.equal('B1')
      // take() serves A (its turn, with A2 left), which is not the oldest.
      expect(queue.take()!.name).to.equal('A2')
      expect(queue.oldest!.name).to.equal('B1')
      queue.remove(get('C1'))
      expect(queue.oldest!.name).to.equal('B1')
      queue.remove(get('B1'))
      expect(queue.oldest).to.equal(undefined)
    })

    it('is not tracked without byAge', () => {
      const { queue, push } = setup()
      push('A1 B1')
      expect(queue.oldest).to.equal(undefined)
    })
  })

  describe('runningOf() and finish()', () => {
    it('lists running entries oldest first, per group, and finishing in any order unlinks exactly that entry', () => {
      const names = ['A1', 'B1', 'A2', 'B2', 'A3']
      for (const order of permutations(names)) {
        const { queue, push, group, get, takeAll } = setup()
        push(names.join(' '))
        const started = takeAll()
        expect(started).to.deep.equal(['A1', 'B1', 'A2', 'B2', 'A3'])
        const running = started.slice()
        for (const name of order) {
          queue.finish(get(name))
          running.splice(running.indexOf(name), 1)
          expect(queue.runningOf(undefined).map((e) => e.name)).to.deep.equal(running)
          expect(queue.runningOf(group('A')).map((e) => e.name)).to.deep.equal(running.filter((n) => n[0] === 'A'))
          expect(group('A').running + group('B').running).to.equal(running.length)
        }
        expect(queue.running).to.equal(0)
      }
    })
  })

  describe('removeAll()', () => {
    it('removes the ring’s groups in turn order, then the capped groups handed in', () => {
      const { queue, push, group, takeAll } = setup(1)
      push('A1 B1')
      takeAll()
      // A and B are at their cap: their new entries wait outside the round.
      push('A2 A3 C1 B2 D1 C2')
      const removed = queue.removeAll([group('A'), group('B'), group('C')]).map((e) => e.name)
      expect(removed).to.deep.equal(['C1', 'C2', 'D1', 'A2', 'A3', 'B2'])
      expect(queue.queued).to.equal(0)
      expect(queue.ready).to.equal(false)
      expect(queue.running).to.equal(2)
    })
  })
})
